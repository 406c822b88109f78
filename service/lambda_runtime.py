"""What the Lambda entrypoints in ``handlers/`` share.

Powertools around every invocation (JSON logs with the request's correlation id and the cold start
flag, EMF metrics flushed per invocation, X-Ray only when tracing is on), the Mangum adapter for
API Gateway, and the jobs behind the S3, scheduled and deploy-time functions.

Importing this module is cheap and offline: no network, no credentials, no database. Engines,
sessions and the S3 client come from the same cached getters as on the server, created on the
first invocation and reused by every later one in the same execution environment.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import os
import warnings
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, unquote_plus

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from mangum import Mangum

from service import events
from service.config import Settings
from service.heap import freeze_startup_heap

Handler = Callable[[dict, Any], Any]

SERVICE_NAME = os.environ.get("POWERTOOLS_SERVICE_NAME", "recordings")
logger = Logger(service=SERVICE_NAME)
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "Recordings"), service=SERVICE_NAME)
# Most API calls change nothing worth counting; an empty flush is normal, not a warning.
warnings.filterwarnings("ignore", message="No application metrics to publish")


def route_service_logs() -> None:
    """Send the service's own log records through the Powertools logger: the same JSON lines,
    with the invocation's correlation id and cold start flag (Lambda only: the server path
    keeps its own JSON logging)."""
    from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

    logging.getLogger("service")  # the parent every service.* logger propagates to
    copy_config_to_registered_loggers(source_logger=logger, include={"service"})


if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
    route_service_logs()


def tracing_enabled() -> bool:
    """Powertools' own rule (in Lambda, not SAM local, not POWERTOOLS_TRACE_DISABLED), checked
    without building a Tracer: even a disabled one imports the X-Ray SDK, about a second of
    cold start."""
    disabled = os.environ.get("POWERTOOLS_TRACE_DISABLED", "false").strip().lower() in ("1", "true", "yes", "on")
    return bool(os.environ.get("LAMBDA_TASK_ROOT")) and not os.environ.get("AWS_SAM_LOCAL") and not disabled


def _build_tracer():
    if not tracing_enabled():
        return None
    from aws_lambda_powertools import Tracer

    return Tracer(service=SERVICE_NAME, patch_modules=("botocore", "psycopg2"))


tracer = _build_tracer()

# --- metrics from the upload lifecycle -----------------------------------------------------------

_COUNTED = {
    "upload.created": "RecordingsCreated",
    "upload.completed": "UploadsCompleted",
    "upload.failed": "UploadsFailed",
    "upload.expired": "UploadsExpired",
    "upload.deleted": "RecordingsDeleted",
    "upload.restored": "RecordingsRestored",
    # S3 refused a call (permissions or configuration): the StorageRejected alarm watches it.
    "storage.rejected": "StorageRejected",
}
# Set while an invocation runs, so that code sharing the process (tests, a local server) never
# fills the EMF buffer that only an invocation flushes.
_invoking: contextvars.ContextVar[bool] = contextvars.ContextVar("lambda_invocation", default=False)


def record_signal(signal: str, value: float | None) -> None:
    if not _invoking.get():
        return
    if signal == "verification.seconds" and value is not None:
        metrics.add_metric(name="VerificationLatency", unit=MetricUnit.Milliseconds, value=value * 1000)
    elif signal in _COUNTED:
        metrics.add_metric(name=_COUNTED[signal], unit=MetricUnit.Count, value=1)


events.add_listener(record_signal)


def lambda_entrypoint(function: Handler | None = None, *, correlation_id_path: str | None = None):
    """Decorate a Lambda handler with the logging context, per-invocation metrics and tracing."""

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        def invoke(event: dict, context: Any) -> Any:
            token = _invoking.set(True)
            try:
                return handler(event, context)
            finally:
                _invoking.reset(token)

        wrapped = logger.inject_lambda_context(invoke, correlation_id_path=correlation_id_path, clear_state=True)
        wrapped = metrics.log_metrics(wrapped, capture_cold_start_metric=True)
        if tracer is not None:
            wrapped = tracer.capture_lambda_handler(wrapped)
        return wrapped

    return wrap(function) if function is not None else wrap


def lazy_handler(build: Callable[[], Handler]) -> Handler:
    """A handler built on its first invocation (settings and app are never built at import).

    What building allocated lives as long as the execution environment: it is frozen out of
    garbage collection, as the server does at start-up.
    """
    built: list[Handler] = []

    def handler(event: dict, context: Any) -> Any:
        if not built:
            built.append(build())
            freeze_startup_heap()
        return built[0](event, context)

    return handler


# --- API Gateway -> ASGI ----------------------------------------------------------------------


def _normalized(base_path: str | None) -> str:
    base_path = (base_path or "").strip().strip("/")
    return f"/{base_path}" if base_path else ""


def _starts_with(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def gateway_prefix(event: dict, path: str, base_path: str = "") -> str:
    """The leading part of ``path`` that API Gateway added in front of the app's own routes.

    A custom domain's base path mapping (configured: API Gateway cannot tell) stays in the path
    of both payload versions. An HTTP API's named stage is the first segment of ``rawPath`` on
    the default endpoint only; REST API (v1) paths never carry the stage.
    """
    prefix = ""
    base_path = _normalized(base_path)
    if base_path and _starts_with(path, base_path):
        prefix = base_path
    context = event.get("requestContext") or {}
    stage = context.get("stage") or "$default"
    stage_in_path = (
        event.get("version") == "2.0"
        and stage != "$default"
        and ".execute-api." in (context.get("domainName") or "")
        and _starts_with(path[len(prefix) :], f"/{stage}")
    )
    return f"{prefix}/{stage}" if stage_in_path else prefix


class GatewayRootPath:
    """Expose API Gateway's path prefix as the ASGI ``root_path``.

    The path keeps its prefix (as the ASGI spec wants), so routing sees the app's own routes while
    generated URLs, the OpenAPI docs and problem ``instance`` fields keep the public path. Mangum's
    own ``api_gateway_base_path`` strips the prefix without telling the app.
    """

    def __init__(self, app: Any, base_path: str = "") -> None:
        self.app = app
        self.base_path = base_path

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        event = scope.get("aws.event")
        if scope["type"] == "http" and event is not None:
            path = _rest_stage(event) + scope["path"]
            prefix = gateway_prefix(event, path, self.base_path) or _rest_stage(event)
            if prefix:
                scope = {**scope, "path": path, "root_path": scope.get("root_path", "") + prefix}
        await self.app(scope, receive, send)


def _rest_stage(event: dict) -> str:
    """A REST API (v1) path leaves out the stage that the client's URL has; the request context's
    path keeps it ("/prod" + "/v1/..."). Empty for other events and on custom domains."""
    if "version" in event or not event.get("path"):
        return ""
    public = unquote((event.get("requestContext") or {}).get("path") or "")
    path = unquote(event["path"])
    return public[: -len(path)] if public != path and public.endswith(path) else ""


def api_handler(app: Any, *, base_path: str | None = None) -> Handler:
    """The Lambda handler for API Gateway HTTP API (v2) and REST API (v1) events around ``app``.

    ``lifespan="off"``: Mangum would run the lifespan on every invocation; nothing depends on it.
    """
    if base_path is None:
        base_path = app.state.settings.api_gateway_base_path
    adapter = Mangum(GatewayRootPath(app, base_path), lifespan="off", api_gateway_base_path="/")

    # API_GATEWAY_HTTP and API_GATEWAY_REST name the same field: requestContext.requestId.
    @lambda_entrypoint(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
    def api(event: dict, context: Any) -> dict:
        return adapter(event, context)

    return api


# --- S3 notifications -------------------------------------------------------------------------


def reconcile_s3_event(event: Any, settings: Settings) -> dict[str, int]:
    """Verify each object an ``ObjectCreated`` notification reports, like ``complete`` does.

    Delivery is at least once and unordered: a recording that is no longer pending keeps its
    recorded version and loses any other bytes at its key (they arrived through a form that was
    still valid), and an object no recording points at is logged and counted, not an error. A record that
    fails (database or S3 unavailable) fails the invocation after the others were handled, so
    Lambda retries the event; the records already handled are then no-ops.
    """
    from service.db import session_scope
    from service.storage import Storage
    from service.uploads.service import reconcile_key

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
            metrics.add_metric(name="UnknownObjects", unit=MetricUnit.Count, value=1)
            outcome["unknown"] += 1
        else:
            outcome[recording.status] += 1
    if outcome["errors"]:
        raise RuntimeError(f"{outcome['errors']} of the event's records could not be reconciled; retry")
    return dict(outcome)


# --- scheduled and deploy-time jobs -------------------------------------------------------------

REAP_BATCH_SIZE = 500
REAP_MAX_BATCHES = 20
SCHEMA_RESOURCE_ID = "recordings-database-schema"


def reap_stale_uploads(settings: Settings) -> dict[str, int]:
    """Expire abandoned uploads, batch after batch, up to a bound that keeps one run short."""
    from service.browser.sessions import delete_expired_sessions
    from service.db import session_scope
    from service.storage import Storage
    from service.uploads.service import reap

    storage = Storage.from_settings(settings)
    expired = examined = swept = 0
    for _ in range(REAP_MAX_BATCHES):
        with session_scope(settings) as session:
            result = reap(session=session, storage=storage, settings=settings, batch_size=REAP_BATCH_SIZE)
        expired, examined = expired + result.expired, examined + result.examined
        swept += result.swept
        if result.examined < REAP_BATCH_SIZE and result.swept < REAP_BATCH_SIZE:
            break
    with session_scope(settings) as session:
        sessions = delete_expired_sessions(session)
    logger.info(
        "reaped stale uploads",
        extra={"expired": expired, "examined": examined, "swept": swept, "expired_sessions": sessions},
    )
    return {"expired": expired, "examined": examined, "swept": swept, "expired_sessions": sessions}


def migrate_for_custom_resource(event: Any, settings: Settings) -> dict[str, Any]:
    """CloudFormation custom resource (CDK Provider framework ``onEvent``).

    Create and Update upgrade the schema to head (a no-op when it is there already); Delete leaves
    the database alone, so deleting the stack never waits on a database. An exception fails the
    deployment through the Provider framework instead of leaving the stack waiting.
    """
    physical_id = event.get("PhysicalResourceId") or SCHEMA_RESOURCE_ID
    if event.request_type == "Delete":
        return {"PhysicalResourceId": physical_id}
    from service import migrate

    migrate.upgrade(settings)
    revision = migrate.current_revision(settings)
    logger.info("database schema migrated", extra={"revision": revision, "request_type": event.request_type})
    return {"PhysicalResourceId": physical_id, "Data": {"Revision": revision or ""}}
