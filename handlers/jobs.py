"""The scheduled reaper (EventBridge rule) and the deploy-time migration (CloudFormation custom
resource through the CDK Provider framework)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.data_classes import CloudFormationCustomResourceEvent, event_source

from handlers.runtime import lambda_entrypoint, logger
from service.core import migrate
from service.core.settings import Settings, get_settings
from service.recordings.jobs import reap_stale_uploads

SCHEMA_RESOURCE_ID = "recordings-database-schema"


@lambda_entrypoint(correlation_id_path=correlation_paths.EVENT_BRIDGE)
def reap_handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    """Expire abandoned uploads, batch after batch, up to a bound that keeps one run short."""
    summary = asdict(reap_stale_uploads(get_settings()))
    logger.info("reaped stale uploads", extra=summary)
    return summary


def migrate_for_custom_resource(event: Any, settings: Settings) -> dict[str, Any]:
    """CloudFormation custom resource (CDK Provider framework ``onEvent``).

    Create and Update upgrade the schema to head (a no-op when it is there already); Delete leaves
    the database alone, so deleting the stack never waits on a database. An exception fails the
    deployment through the Provider framework instead of leaving the stack waiting.
    """
    physical_id = event.get("PhysicalResourceId") or SCHEMA_RESOURCE_ID
    if event.request_type == "Delete":
        return {"PhysicalResourceId": physical_id}
    migrate.upgrade(settings)
    revision = migrate.current_revision(settings)
    logger.info("database schema migrated", extra={"revision": revision, "request_type": event.request_type})
    return {"PhysicalResourceId": physical_id, "Data": {"Revision": revision or ""}}


@lambda_entrypoint
@event_source(data_class=CloudFormationCustomResourceEvent)
def migrate_handler(event: CloudFormationCustomResourceEvent, context: Any) -> dict[str, Any]:
    return migrate_for_custom_resource(event, get_settings())
