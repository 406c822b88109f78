"""The Lambda path's functions and what surrounds them: their security group and environment,
the migration custom resource, the S3 event handler with its dead-letter queue and bucket
notification, the scheduled reaper, and the API function behind its HTTP API. Grants are left
to the stack that composes them.

They are built in the scope they are given (the backend stack) rather than in a construct of
their own: a new construct level would change the logical id of every resource below it, and
CloudFormation would replace the functions, the HTTP API (its URL) and the migration resource.
"""

from __future__ import annotations

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_notifications as s3n
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cdk.app_environment import app_environment, grant_metrics_token_read
from cdk.config import DeploymentConfig
from cdk.constructs.database import Database
from cdk.constructs.functions import (
    API_HANDLER,
    MIGRATE_HANDLER,
    REAPER_HANDLER,
    S3_EVENTS_HANDLER,
    AppFunction,
    FunctionSettings,
)
from cdk.constructs.http_api import HttpApi
from cdk.constructs.migration import DatabaseMigration
from cdk.constructs.storage import RecordingsStorage
from cdk.cross_stack import publish, read
from cdk.nag import acknowledge
from cdk.replica_access import allow_replica_reads, replica_read_host


def functions_security_group(
    scope: Construct, *, vpc: ec2.IVpc, config: DeploymentConfig, database: Database
) -> ec2.SecurityGroup:
    """HTTPS out (AWS APIs) and PostgreSQL out to the database or its proxy and the replicas.

    The proxy exists only with features.rds_proxy: its security group comes through SSM (see
    cdk/cross_stack.py), and the egress rule names the VPC's range rather than the proxy's
    group, which could otherwise not be deleted when the flag goes off. The ingress rule lands
    on the database (or proxy) security group, created in ``scope``'s stack.
    """
    group = ec2.SecurityGroup(
        scope, "FunctionsSecurityGroup", vpc=vpc, description="Recordings Lambda functions", allow_all_outbound=False
    )
    group.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "AWS APIs (Secrets Manager, S3)")
    _, db_port, _ = database.lambda_endpoint()
    db_target = ec2.SecurityGroup.from_security_group_id(
        scope, "DatabaseTarget", read(scope, config, "data", "lambda-database-security-group")
    )
    db_target.add_ingress_rule(group, ec2.Port.tcp(db_port), "Lambda to PostgreSQL")
    group.add_egress_rule(
        ec2.Peer.ipv4(vpc.vpc_cidr_block), ec2.Port.tcp(db_port), "Lambda to PostgreSQL (or its proxy)"
    )
    allow_replica_reads(scope, config, group, "Lambda to the read replicas")
    return group


def lambda_environment(
    scope: Construct,
    config: DeploymentConfig,
    *,
    database: Database,
    storage: RecordingsStorage,
    metrics_token: secretsmanager.ISecret,
) -> dict[str, str]:
    """The app's environment in Lambda: one connection per execution, the database host (or the
    proxy's) through SSM, HTTPS-only cookies (API Gateway serves HTTPS only). The API function
    adds its own PUBLIC_BASE_URL (the HTTP API's URL)."""
    _, db_port, _ = database.lambda_endpoint()
    environment = app_environment(
        config,
        runtime="lambda",
        database_host=read(scope, config, "data", "lambda-database-host"),
        database_port=db_port,
        database_secret_arn=database.app_secret.secret_arn,
        bucket_name=storage.bucket_name,
        db_pool_size=1,
        db_max_overflow=0,
        public_base_url=None,
        metrics_token_secret_arn=metrics_token.secret_arn,
        database_read_host=replica_read_host(scope, config),
    )
    environment["SESSION_COOKIE_SECURE"] = "true"
    return environment


def add_migration(
    scope: Construct, *, settings: FunctionSettings, database: Database, reserved_concurrency: int | None
) -> tuple[AppFunction, DatabaseMigration]:
    """The migrate function and the custom resource that runs it on deploy. It runs as the owner:
    the stack grants it the master secret as well as the app's (it keeps the app's role in step
    with the app's secret); nothing else reads the master secret."""
    migrate = AppFunction(
        scope,
        "Migrate",
        handler=MIGRATE_HANDLER,
        description="Alembic upgrade head (deploy-time custom resource)",
        settings=settings.with_environment(DATABASE_MIGRATION_SECRET_ARN=database.master_secret.secret_arn),
        reserved_concurrency=reserved_concurrency,
        timeout=Duration.minutes(10),
        retry_attempts=0,
    )
    migration = DatabaseMigration(
        scope, "Migration", on_event_handler=migrate.function, log_retention=settings.log_retention
    )
    # Migrations need the database and its ingress rule in place before they run.
    migration.node.add_dependency(settings.security_group)
    return migrate, migration


def add_upload_verifier(
    scope: Construct, *, settings: FunctionSettings, reserved_concurrency: int | None
) -> tuple[AppFunction, sqs.Queue]:
    """The S3 event handler, invoked on every ObjectCreated of the recordings bucket; events that
    still fail after two retries land in its dead-letter queue (encrypted, TLS-only, kept two
    weeks)."""
    dead_letters = sqs.Queue(
        scope,
        "S3EventsDeadLetters",
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
        retention_period=Duration.days(14),
    )
    acknowledge(
        dead_letters,
        "AwsSolutions-SQS3",
        "This queue is itself the on-failure destination (dead-letter queue) of the S3 event function.",
    )
    s3_events = AppFunction(
        scope,
        "S3Events",
        handler=S3_EVENTS_HANDLER,
        description="Verifies uploads on S3 ObjectCreated (idempotent)",
        settings=settings,
        reserved_concurrency=reserved_concurrency,
        timeout=Duration.seconds(60),
        retry_attempts=2,
        on_failure=destinations.SqsDestination(dead_letters),
    )
    return s3_events, dead_letters


def notify_on_upload(scope: Construct, storage: RecordingsStorage, function: AppFunction) -> None:
    """S3 ObjectCreated on the recordings bucket invokes ``function``. Configured from ``scope``
    on a reference to the bucket, so the data stack never depends on the functions (no
    cross-stack cycle)."""
    bucket = s3.Bucket.from_bucket_name(scope, "RecordingsBucketRef", storage.bucket_name)
    bucket.add_event_notification(s3.EventType.OBJECT_CREATED, s3n.LambdaDestination(function.function))


def add_reaper(
    scope: Construct, *, settings: FunctionSettings, interval_minutes: int, reserved_concurrency: int | None
) -> AppFunction:
    """The reaper, run every ``interval_minutes``: expires stale pending uploads."""
    reaper = AppFunction(
        scope,
        "Reaper",
        handler=REAPER_HANDLER,
        description="Expires stale pending uploads and aborts their multipart uploads",
        settings=settings,
        reserved_concurrency=reserved_concurrency,
        timeout=Duration.minutes(5),
        retry_attempts=0,
    )
    events.Rule(
        scope,
        "ReaperSchedule",
        description="Run the upload reaper",
        schedule=events.Schedule.rate(Duration.minutes(interval_minutes)),
        targets=[targets.LambdaFunction(reaper.function)],
    )
    return reaper


def add_lambda_api(
    scope: Stack,
    config: DeploymentConfig,
    *,
    settings: FunctionSettings,
    metrics_token: secretsmanager.ISecret,
    migration: Construct,
) -> tuple[AppFunction, HttpApi]:
    """The API function behind an HTTP API (features.lambda_api). Both wait for ``migration``
    (never serve a schema older than the code); the API id and function name are published
    through SSM for the monitoring stack, since they exist only with the flag."""
    lam = config.lambda_
    api = AppFunction(
        scope,
        "Api",
        handler=API_HANDLER,
        description="Recordings HTTP API (Mangum)",
        settings=settings,
        reserved_concurrency=config.reserved_concurrency.get("Api"),
        timeout=Duration.seconds(lam.api_timeout_seconds),
    )
    grant_metrics_token_read(metrics_token, api.function)
    http_api = HttpApi(
        scope,
        "HttpApi",
        function=api.function,
        cors_origins=list(config.allowed_origins),
        throttle_rate_limit=lam.throttle_rate_limit,
        throttle_burst_limit=lam.throttle_burst_limit,
        log_retention=settings.log_retention,
    )
    # Links and the browser page's origin checks use the front door the request came in by.
    api.function.add_environment("PUBLIC_BASE_URL", http_api.base_url)
    api.function.node.add_dependency(migration)
    http_api.node.add_dependency(migration)
    CfnOutput(scope, "ApiUrl", value=http_api.url, description="HTTP API (Lambda path)")
    publish(scope, config, "backend", "http-api-id", http_api.api.api_id)
    publish(scope, config, "backend", "api-function-name", api.function.function_name)
    return api, http_api
