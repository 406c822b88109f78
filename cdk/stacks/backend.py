"""The Lambda path: API behind an HTTP API, S3 event handler, reaper, migrations."""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr as ecr
from constructs import Construct

from cdk.app_environment import metrics_token_secret
from cdk.config import AlarmConfig, DeploymentConfig
from cdk.constructs.database import Database
from cdk.constructs.functions import AppFunction, FunctionSettings, dead_letter_alarm
from cdk.constructs.http_api import HttpApi
from cdk.constructs.lambda_path import (
    add_lambda_api,
    add_migration,
    add_reaper,
    add_upload_verifier,
    functions_security_group,
    lambda_environment,
    notify_on_upload,
)
from cdk.constructs.monitoring import AlarmSpec
from cdk.constructs.storage import (
    API_ACCESS,
    REAPER_ACCESS,
    S3_EVENTS_ACCESS,
    RecordingsStorage,
    emitted_storage_rejections,
)
from cdk.cross_stack import read
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
        self.config = config
        reserved = config.reserved_concurrency
        self.security_group = functions_security_group(self, vpc=vpc, config=config, database=database)
        self.metrics_token = metrics_token_secret(self)
        environment = lambda_environment(
            self, config, database=database, storage=storage, metrics_token=self.metrics_token
        )
        settings = FunctionSettings(
            vpc=vpc,
            security_group=self.security_group,
            environment=environment,
            memory_mb=config.lambda_.memory_mb,
            log_retention=log_retention(config.log_retention_days),
            image_repository=repository,
            image_digest=image_digest,
        )
        self.migrate, self.migration = add_migration(
            self, settings=settings, database=database, reserved_concurrency=reserved.get("Migrate")
        )
        self.s3_events, self.dead_letters = add_upload_verifier(
            self, settings=settings, reserved_concurrency=reserved.get("S3Events")
        )
        self.reaper = add_reaper(
            self,
            settings=settings,
            interval_minutes=config.lambda_.reaper_interval_minutes,
            reserved_concurrency=reserved.get("Reaper"),
        )
        notify_on_upload(self, storage, self.s3_events)
        self.api: AppFunction | None = None
        self.http_api: HttpApi | None = None
        if config.features.lambda_api:
            self.api, self.http_api = add_lambda_api(
                self, config, settings=settings, metrics_token=self.metrics_token, migration=self.migration.resource
            )

        database.grant_secret_read(self.migrate.function)
        database.grant_owner_secret_read(self.migrate.function)
        storage.grant_app_access(self.s3_events.function, access=S3_EVENTS_ACCESS, principal_scope=self.s3_events)
        storage.grant_app_access(self.reaper.function, access=REAPER_ACCESS, principal_scope=self.reaper)
        if self.api is not None:
            storage.grant_app_access(self.api.function, access=API_ACCESS, principal_scope=self.api)
        for fn in (self.s3_events, self.reaper, self.api):
            if fn is not None:
                database.grant_secret_read(fn.function)

        # Every function whose existence no flag decides (the API function is added by name).
        self.functions = [self.migrate, self.s3_events, self.reaper]
        # What the functions count when S3 refuses them (EMF), for the StorageRejected alarm.
        self.storage_rejected = emitted_storage_rejections(Duration.minutes(5))

    def alarms(self, scope: Construct, thresholds: AlarmConfig) -> list[AlarmSpec]:
        """The HTTP API's and every function's alarms, and the dead-letter queue's. The API's id
        and function name are read in ``scope`` through SSM: they exist only with
        features.lambda_api, so an export would block turning the flag off."""
        specs: list[AlarmSpec] = []
        if self.http_api is not None:
            specs += self.http_api.alarms(thresholds, api_id=read(scope, self.config, "backend", "http-api-id"))
        for fn in self.functions:
            specs += fn.alarms()
        if self.api is not None:
            specs += self.api.alarms(function_name=read(scope, self.config, "backend", "api-function-name"))
        specs.append(
            dead_letter_alarm(
                self.dead_letters, name="S3EventsDeadLetters", what="S3 events that failed verification after retries"
            )
        )
        return specs
