"""The scheduled reaper (EventBridge rule) and the deploy-time migration (CloudFormation custom
resource through the CDK Provider framework)."""

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.data_classes import CloudFormationCustomResourceEvent, event_source

from service.config import get_settings
from service.lambda_runtime import lambda_entrypoint, migrate_for_custom_resource, reap_stale_uploads


@lambda_entrypoint(correlation_id_path=correlation_paths.EVENT_BRIDGE)
def reap_handler(event: dict, context) -> dict:
    return reap_stale_uploads(get_settings())


@lambda_entrypoint
@event_source(data_class=CloudFormationCustomResourceEvent)
def migrate_handler(event: CloudFormationCustomResourceEvent, context) -> dict:
    return migrate_for_custom_resource(event, get_settings())
