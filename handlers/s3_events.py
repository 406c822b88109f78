"""S3 ObjectCreated notifications -> the same verification as ``complete`` (idempotent)."""

from __future__ import annotations

from collections import Counter
from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools.utilities.data_classes import S3Event, event_source

from handlers.runtime import lambda_entrypoint, logger
from service.core.db import session_scope
from service.core.settings import Settings, get_settings
from service.core.storage import Storage
from service.observability import emf
from service.recordings.uploads import reconcile_key


def reconcile_s3_event(event: Any, settings: Settings) -> dict[str, int]:
    """Verify each object an ``ObjectCreated`` notification reports, like ``complete`` does.

    Delivery is at least once and unordered: a recording that is no longer pending keeps its
    recorded version and loses any other bytes at its key (they arrived through a form that was
    still valid), and an object no recording points at is logged and counted, not an error. A record that
    fails (database or S3 unavailable) fails the invocation after the others were handled, so
    Lambda retries the event; the records already handled are then no-ops.
    """
    storage = Storage.from_settings(settings)
    outcome: Counter[str] = Counter()
    for record in event.records:
        # S3 sends keys form-encoded ("+" for a space); the record's data class leaves them so.
        bucket, key = record.s3.bucket.name, unquote_plus(record.s3.get_object.key)
        if not record.event_name.startswith("ObjectCreated:") or bucket != settings.s3_bucket:
            logger.info("ignored S3 notification", extra={"event_name": record.event_name, "bucket": bucket})
            outcome["ignored"] += 1
            continue
        try:
            with session_scope(settings) as session:
                recording = reconcile_key(
                    session=session,
                    storage=storage,
                    key=key,
                    version_id=record.s3.get_object.version_id,
                    max_bytes=settings.max_upload_bytes,
                )
        except Exception:
            logger.exception("could not reconcile an uploaded object", extra={"key": key})
            outcome["errors"] += 1
            continue
        if recording is None:
            logger.warning("no recording for the uploaded object", extra={"key": key})
            emf.count("UnknownObjects")
            outcome["unknown"] += 1
        else:
            outcome[recording.status] += 1
    if outcome["errors"]:
        raise RuntimeError(f"{outcome['errors']} of the event's records could not be reconciled; retry")
    return dict(outcome)


@lambda_entrypoint
@event_source(data_class=S3Event)
def handler(event: S3Event, context: Any) -> dict[str, int]:
    return reconcile_s3_event(event, get_settings())
