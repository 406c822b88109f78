"""Lambda functions from the repository's Dockerfile (``lambda`` target): the image CI built and
scanned (by digest, from the ECR repository) or, without a digest, an asset built by ``cdk deploy``."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from cdk.nag import acknowledge

REPO_ROOT = Path(__file__).resolve().parents[2]

API_HANDLER = "handlers.api.handler"
S3_EVENTS_HANDLER = "handlers.s3_events.handler"
REAPER_HANDLER = "handlers.jobs.reap_handler"
MIGRATE_HANDLER = "handlers.jobs.migrate_handler"


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
        vpc: ec2.IVpc,
        security_group: ec2.ISecurityGroup,
        environment: dict[str, str],
        reserved_concurrency: int | None,
        memory_mb: int,
        timeout: Duration,
        log_retention: logs.RetentionDays,
        retry_attempts: int | None = None,
        on_failure: lambda_.IDestination | None = None,
        image_repository: ecr.IRepository | None = None,
        image_digest: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        if image_digest and image_repository:
            code = lambda_.DockerImageCode.from_ecr(image_repository, tag_or_digest=image_digest, cmd=[handler])
        else:
            code = lambda_.DockerImageCode.from_image_asset(
                directory=str(REPO_ROOT),
                target="lambda",
                cmd=[handler],
                platform=ecr_assets.Platform.LINUX_AMD64,
            )
        self.log_group = logs.LogGroup(self, "Logs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY)
        self.function = lambda_.DockerImageFunction(
            self,
            "Function",
            code=code,
            architecture=lambda_.Architecture.X86_64,
            description=description,
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            security_groups=[security_group],
            environment=environment,
            reserved_concurrent_executions=reserved_concurrency,
            memory_size=memory_mb,
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
