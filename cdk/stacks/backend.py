"""The Lambda path: API behind an HTTP API, S3 event handler, reaper, migrations."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_notifications as s3n
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cdk.app_environment import app_environment, grant_metrics_token_read, metrics_token_secret
from cdk.config import DeploymentConfig
from cdk.constructs.database import Database
from cdk.constructs.functions import (
    API_HANDLER,
    MIGRATE_HANDLER,
    REAPER_HANDLER,
    S3_EVENTS_HANDLER,
    AppFunction,
)
from cdk.constructs.http_api import HttpApi
from cdk.constructs.migration import DatabaseMigration
from cdk.constructs.storage import API_ACCESS, REAPER_ACCESS, S3_EVENTS_ACCESS, RecordingsStorage
from cdk.cross_stack import publish, read
from cdk.nag import acknowledge
from cdk.replica_access import allow_replica_reads, replica_read_host
from cdk.retention import log_retention


class BackendStack(Stack):
    """Functions share one image and one security group; every function that touches the
    database counts against the connection budget, through its reserved concurrency when the
    profile reserves, through the account's concurrency quota otherwise."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeploymentConfig,
        vpc: ec2.IVpc,
        database: Database,
        storage: RecordingsStorage,
        repository: ecr.IRepository | None = None,
        image_digest: str | None = None,
        **kwargs: Any,
    ) -> None:
        """With ``image_digest`` (``-c lambda_image_digest=sha256:...``, passed by the deploy job)
        every function runs that image from ``repository``, the one CI scanned."""
        super().__init__(scope, construct_id, **kwargs)
        lam = config.lambda_
        retention = log_retention(config.log_retention_days)
        self.security_group = ec2.SecurityGroup(
            self, "FunctionsSecurityGroup", vpc=vpc, description="Recordings Lambda functions", allow_all_outbound=False
        )
        self.security_group.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "AWS APIs (Secrets Manager, S3)")
        # The proxy exists only with features.rds_proxy: its endpoint and security group come
        # through SSM (see cdk/cross_stack.py), and the egress rule names the VPC's range rather
        # than the proxy's group, which could otherwise not be deleted when the flag goes off.
        _, db_port, _ = database.lambda_endpoint()
        db_host = read(self, config, "data", "lambda-database-host")
        db_target = ec2.SecurityGroup.from_security_group_id(
            self, "DatabaseTarget", read(self, config, "data", "lambda-database-security-group")
        )
        # The ingress rule lands on the database (or proxy) security group, created in this stack.
        db_target.add_ingress_rule(self.security_group, ec2.Port.tcp(db_port), "Lambda to PostgreSQL")
        self.security_group.add_egress_rule(
            ec2.Peer.ipv4(vpc.vpc_cidr_block), ec2.Port.tcp(db_port), "Lambda to PostgreSQL (or its proxy)"
        )
        allow_replica_reads(self, config, self.security_group, "Lambda to the read replicas")

        self.metrics_token = metrics_token_secret(self)
        environment = app_environment(
            config,
            runtime="lambda",
            database_host=db_host,
            database_port=db_port,
            database_secret_arn=database.app_secret.secret_arn,
            bucket_name=storage.bucket_name,
            db_pool_size=1,
            db_max_overflow=0,
            public_base_url=None,  # the API function gets its own (the HTTP API's URL) below
            metrics_token_secret_arn=self.metrics_token.secret_arn,
            database_read_host=replica_read_host(self, config),
        )
        # API Gateway serves HTTPS only.
        environment["SESSION_COOKIE_SECURE"] = "true"
        reserved = config.reserved_concurrency
        common = {
            "vpc": vpc,
            "security_group": self.security_group,
            "environment": environment,
            "memory_mb": lam.memory_mb,
            "log_retention": retention,
            "image_repository": repository,
            "image_digest": image_digest,
        }

        # The migration runs as the owner (master secret) and keeps the app's role in step with
        # the app's secret, so it reads both; nothing else reads the master secret.
        self.migrate = AppFunction(
            self,
            "Migrate",
            handler=MIGRATE_HANDLER,
            description="Alembic upgrade head (deploy-time custom resource)",
            reserved_concurrency=reserved.get("Migrate"),
            timeout=Duration.minutes(10),
            retry_attempts=0,
            **{
                **common,
                "environment": {**environment, "DATABASE_MIGRATION_SECRET_ARN": database.master_secret.secret_arn},
            },
        )
        database.grant_secret_read(self.migrate.function)
        database.grant_owner_secret_read(self.migrate.function)
        self.migration = DatabaseMigration(
            self, "Migration", on_event_handler=self.migrate.function, log_retention=retention
        )
        # Migrations need the database and its ingress rule in place before they run.
        self.migration.node.add_dependency(self.security_group)

        self.dead_letters = sqs.Queue(
            self,
            "S3EventsDeadLetters",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        self.s3_events = AppFunction(
            self,
            "S3Events",
            handler=S3_EVENTS_HANDLER,
            description="Verifies uploads on S3 ObjectCreated (idempotent)",
            reserved_concurrency=reserved.get("S3Events"),
            timeout=Duration.seconds(60),
            retry_attempts=2,
            on_failure=destinations.SqsDestination(self.dead_letters),
            **common,
        )
        self.reaper = AppFunction(
            self,
            "Reaper",
            handler=REAPER_HANDLER,
            description="Expires stale pending uploads and aborts their multipart uploads",
            reserved_concurrency=reserved.get("Reaper"),
            timeout=Duration.minutes(5),
            retry_attempts=0,
            **common,
        )
        events.Rule(
            self,
            "ReaperSchedule",
            description="Run the upload reaper",
            schedule=events.Schedule.rate(Duration.minutes(lam.reaper_interval_minutes)),
            targets=[targets.LambdaFunction(self.reaper.function)],
        )
        # Notifications are configured from this stack on a reference to the bucket, so the data
        # stack never depends on the functions (no cross-stack cycle).
        bucket_ref = s3.Bucket.from_bucket_name(self, "RecordingsBucketRef", storage.bucket_name)
        bucket_ref.add_event_notification(s3.EventType.OBJECT_CREATED, s3n.LambdaDestination(self.s3_events.function))

        app_functions = [self.s3_events, self.reaper]
        self.api: AppFunction | None = None
        self.http_api: HttpApi | None = None
        if config.features.lambda_api:
            self.api = AppFunction(
                self,
                "Api",
                handler=API_HANDLER,
                description="Recordings HTTP API (Mangum)",
                reserved_concurrency=reserved.get("Api"),
                timeout=Duration.seconds(lam.api_timeout_seconds),
                **common,
            )
            app_functions.append(self.api)
            grant_metrics_token_read(self.metrics_token, self.api.function)
            self.http_api = HttpApi(
                self,
                "HttpApi",
                function=self.api.function,
                cors_origins=list(config.allowed_origins),
                throttle_rate_limit=lam.throttle_rate_limit,
                throttle_burst_limit=lam.throttle_burst_limit,
                log_retention=retention,
            )
            # Links and the browser page's origin checks use the front door the request came in by.
            self.api.function.add_environment("PUBLIC_BASE_URL", self.http_api.base_url)
            # Never serve a schema older than the code: the API waits for the migration.
            self.api.function.node.add_dependency(self.migration.resource)
            self.http_api.node.add_dependency(self.migration.resource)
            CfnOutput(self, "ApiUrl", value=self.http_api.url, description="HTTP API (Lambda path)")
            # Read by the monitoring stack through SSM: these exist only with features.lambda_api.
            publish(self, config, "backend", "http-api-id", self.http_api.api.api_id)
            publish(self, config, "backend", "api-function-name", self.api.function.function_name)

        storage.grant_app_access(self.s3_events.function, access=S3_EVENTS_ACCESS, principal_scope=self.s3_events)
        storage.grant_app_access(self.reaper.function, access=REAPER_ACCESS, principal_scope=self.reaper)
        if self.api is not None:
            storage.grant_app_access(self.api.function, access=API_ACCESS, principal_scope=self.api)
        for fn in app_functions:
            database.grant_secret_read(fn.function)

        # Every function whose existence no flag decides (the API function is added by name).
        self.functions = [self.migrate, *(fn for fn in app_functions if fn is not self.api)]
        self._acknowledge()

    def _acknowledge(self) -> None:
        acknowledge(
            self.dead_letters,
            "AwsSolutions-SQS3",
            "This queue is itself the on-failure destination (dead-letter queue) of the S3 event function.",
        )
