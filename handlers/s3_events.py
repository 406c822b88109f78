"""S3 ObjectCreated notifications -> the same verification as ``complete`` (idempotent)."""

from aws_lambda_powertools.utilities.data_classes import S3Event, event_source

from service.config import get_settings
from service.lambda_runtime import lambda_entrypoint, reconcile_s3_event


@lambda_entrypoint
@event_source(data_class=S3Event)
def handler(event: S3Event, context) -> dict:
    return reconcile_s3_event(event, get_settings())
