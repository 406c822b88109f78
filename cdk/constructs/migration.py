"""Database migrations as a deploy-time custom resource."""

from __future__ import annotations

import hashlib
from pathlib import Path

from aws_cdk import CustomResource, RemovalPolicy, Stack
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import custom_resources as cr
from constructs import Construct

from cdk.constructs.functions import REPO_ROOT
from cdk.nag import acknowledge


def migrations_fingerprint(root: Path = REPO_ROOT) -> str:
    """Hash of the migration scripts, so the resource re-runs exactly when they change."""
    digest = hashlib.sha256()
    files = [*sorted((root / "migrations").rglob("*.py")), root / "alembic.ini"]
    for path in files:
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


class DatabaseMigration(Construct):
    """Runs ``alembic upgrade head`` (the migrate handler) through the CDK Provider framework on
    every deployment whose migrations changed. The handler raises on failure, which fails the
    deployment and rolls it back before anything that depends on ``resource`` is touched."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        on_event_handler: lambda_.IFunction,
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, construct_id)
        self.provider = cr.Provider(
            self,
            "Provider",
            on_event_handler=on_event_handler,
            log_group=logs.LogGroup(
                self, "ProviderLogs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY
            ),
        )
        self.resource = CustomResource(
            self,
            "Resource",
            service_token=self.provider.service_token,
            resource_type="Custom::DatabaseMigration",
            properties={"MigrationsFingerprint": migrations_fingerprint()},
        )
        handler_id = Stack.of(self).get_logical_id(on_event_handler.node.default_child)
        acknowledge(
            self.provider,
            "AwsSolutions-IAM4",
            "The CDK Provider framework's own function writes only its logs via the AWS-maintained "
            "basic execution policy.",
            "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
        )
        acknowledge(
            self.provider,
            "AwsSolutions-IAM5",
            "The Provider framework invokes the migrate handler and its versions/aliases (ARN:*); "
            "it is scoped to that one function.",
            f"Resource::<{handler_id}.Arn>:*",
        )
