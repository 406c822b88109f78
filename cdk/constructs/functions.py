"""Lambda functions from the repository's Dockerfile (``lambda`` target): the image CI built and
scanned (by digest, from the ECR repository) or, without a digest, an asset built by ``cdk deploy``."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cdk.constructs.http_api import LAMBDA_SECTION
from cdk.constructs.monitoring import FIVE_MINUTES, GTE, AlarmSpec, metric
from cdk.nag import acknowledge

REPO_ROOT = Path(__file__).resolve().parents[2]

API_HANDLER = "handlers.api.handler"
S3_EVENTS_HANDLER = "handlers.s3_events.handler"
REAPER_HANDLER = "handlers.jobs.reap_handler"
MIGRATE_HANDLER = "handlers.jobs.migrate_handler"


@dataclass(frozen=True, kw_only=True)
class FunctionSettings:
    """What every function of the service shares: network, image, environment, memory, logs.

    With ``image_digest`` (``-c lambda_image_digest=sha256:...``, passed by the deploy job) the
    functions run that image from ``image_repository``, the one CI scanned."""

    vpc: ec2.IVpc
    security_group: ec2.ISecurityGroup
    environment: dict[str, str]
    memory_mb: int
    log_retention: logs.RetentionDays
    image_repository: ecr.IRepository | None = None
    image_digest: str | None = None

    def with_environment(self, **extra: str) -> FunctionSettings:
        return replace(self, environment={**self.environment, **extra})


class AppFunction(Construct):
    """One entry point of the service as a container-image Lambda function in the VPC.

    All functions share one image asset (same directory, Dockerfile target and platform, so one
    build and one push); only the handler command differs. The function gets its own log group
    with a retention, and (if the profile opts in) a reserved concurrency, which bounds its
    database connections.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        handler: str,
        description: str,
        settings: FunctionSettings,
        reserved_concurrency: int | None,
        timeout: Duration,
        retry_attempts: int | None = None,
        on_failure: lambda_.IDestination | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        if settings.image_digest and settings.image_repository:
            code = lambda_.DockerImageCode.from_ecr(
                settings.image_repository, tag_or_digest=settings.image_digest, cmd=[handler]
            )
        else:
            code = lambda_.DockerImageCode.from_image_asset(
                directory=str(REPO_ROOT),
                target="lambda",
                cmd=[handler],
                platform=ecr_assets.Platform.LINUX_AMD64,
            )
        self.log_group = logs.LogGroup(
            self, "Logs", retention=settings.log_retention, removal_policy=RemovalPolicy.DESTROY
        )
        self.function = lambda_.DockerImageFunction(
            self,
            "Function",
            code=code,
            architecture=lambda_.Architecture.X86_64,
            description=description,
            vpc=settings.vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            security_groups=[settings.security_group],
            environment=settings.environment,
            reserved_concurrent_executions=reserved_concurrency,
            memory_size=settings.memory_mb,
            timeout=timeout,
            log_group=self.log_group,
            tracing=lambda_.Tracing.ACTIVE,
            retry_attempts=retry_attempts,
            on_failure=on_failure,
        )
        acknowledge(
            self.function,
            "AwsSolutions-IAM4",
            "AWS-maintained Lambda execution policies: CloudWatch Logs writes and the ENI "
            "management a function in a VPC needs; nothing data-related.",
            "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
            "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole",
        )
        acknowledge(
            self.function,
            "AwsSolutions-IAM5",
            "X-Ray tracing (xray:PutTraceSegments, xray:PutTelemetryRecords) supports no resource-level permissions.",
            "Resource::*",
        )

    def alarms(self, *, function_name: str | None = None) -> list[AlarmSpec]:
        """Any error or throttle in 5 minutes, under the function's construct id. ``function_name``
        defaults to this function's; another stack passes the value it read through SSM."""
        name, dimensions = self.node.id, {"FunctionName": function_name or self.function.function_name}
        return [
            AlarmSpec(
                name=f"{name}{what}",
                section=LAMBDA_SECTION,
                description=f"Lambda {name}: {description} in 5 minutes",
                metric=metric("AWS/Lambda", what, dimensions, "Sum", FIVE_MINUTES),
                threshold=1,
                comparison=GTE,
                evaluation_periods=1,
            )
            for what, description in (("Errors", "errors"), ("Throttles", "throttled"))
        ]


def dead_letter_alarm(queue: sqs.IQueue, *, name: str, what: str) -> AlarmSpec:
    """Any message in a function's dead-letter queue: ``what`` failed after its retries."""
    return AlarmSpec(
        name=name,
        section=LAMBDA_SECTION,
        description=f"{what} (dead-letter queue)",
        metric=queue.metric_approximate_number_of_messages_visible(period=FIVE_MINUTES, statistic="Maximum"),
        threshold=1,
        comparison=GTE,
        evaluation_periods=1,
    )
