"""The EC2 path: the server image on an Auto Scaling group behind an ALB."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr as ecr
from constructs import Construct

from cdk.app_environment import app_environment
from cdk.config import DeploymentConfig
from cdk.constructs.database import Database
from cdk.constructs.ec2_service import Ec2Service
from cdk.constructs.storage import (
    API_ACCESS,
    RecordingsStorage,
    count_storage_rejections,
)
from cdk.nag import acknowledge
from cdk.retention import log_retention


class Ec2ServiceStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeploymentConfig,
        vpc: ec2.IVpc,
        database: Database,
        storage: RecordingsStorage,
        repository: ecr.IRepository,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        ec2_cfg = config.ec2
        public_base_url = f"https://{config.domain_name}" if config.domain_name else None
        environment = app_environment(
            config,
            runtime="server",
            database_host=database.endpoint_host,
            database_port=config.database.port,
            database_secret_arn=database.app_secret.secret_arn,
            bucket_name=storage.bucket_name,
            db_pool_size=ec2_cfg.db_pool_size,
            db_max_overflow=ec2_cfg.db_max_overflow,
            public_base_url=public_base_url,
            database_read_host=database.read_hosts,
        )
        # Outside Lambda the SDK needs the region from the environment.
        environment.update(AWS_REGION=self.region, AWS_DEFAULT_REGION=self.region)
        self.service = Ec2Service(
            self,
            "Service",
            vpc=vpc,
            config=ec2_cfg,
            repository=repository,
            container_environment=environment,
            log_retention=log_retention(config.log_retention_days),
            certificate_arn=config.certificate_arn,
            node_exporter_image=config.monitoring_host.node_exporter_image if config.features.monitoring_host else None,
        )
        role = self.service.role
        # The API, plus what the runbook's commands on the host need (`ops verify-s3-restore`).
        storage.grant_app_access(role, access=API_ACCESS, principal_scope=role)
        # S3 refusing the app, as logged by the container: the monitoring stack's StorageRejected alarm.
        self.storage_rejected = count_storage_rejections(self.service.container_log_group, Duration.minutes(5))
        database.grant_secret_read(role)
        repository.grant_pull(role)
        self.service.instance_security_group.connections.allow_to(
            database.instance, ec2.Port.tcp(config.database.port), "EC2 app to PostgreSQL"
        )
        database.allow_read_from(self.service.instance_security_group, "EC2 app to the read replicas")

        CfnOutput(self, "LoadBalancerDnsName", value=self.service.alb.load_balancer_dns_name)
        CfnOutput(self, "ServiceUrl", value=public_base_url or self.service.url)
        CfnOutput(self, "AutoScalingGroupName", value=self.service.asg.auto_scaling_group_name)
        self._acknowledge()

    def _acknowledge(self) -> None:
        svc = self.service
        acknowledge(
            svc.alb_security_group,
            "AwsSolutions-EC23",
            "Internet-facing ALB of a public HTTP API: ingress from 0.0.0.0/0 only on the listener ports.",
        )
        acknowledge(
            svc.alb_logs,
            "AwsSolutions-S1",
            "This bucket only receives ALB access logs; logging access to the log bucket would recurse.",
        )
