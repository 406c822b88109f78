"""The EC2 path: the server image on an Auto Scaling group behind an ALB."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr as ecr
from constructs import Construct

from cdk.app_environment import grant_metrics_token_read, metrics_token_secret, server_environment
from cdk.config import AlarmConfig, DeploymentConfig
from cdk.constructs.database import Database
from cdk.constructs.ec2_service import Ec2Service, HttpsOptions, server_image_parameter_name
from cdk.constructs.monitoring import AlarmSpec
from cdk.constructs.storage import (
    API_ACCESS,
    RecordingsStorage,
    count_storage_rejections,
)
from cdk.cross_stack import publish, read
from cdk.nag import acknowledge
from cdk.replica_access import allow_replica_reads, replica_read_host
from cdk.retention import log_retention, removal_policy


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
        self.config = config
        self.metrics_token = metrics_token_secret(self)
        environment = server_environment(
            self,
            config,
            database_host=database.endpoint_host,
            database_secret_arn=database.app_secret.secret_arn,
            bucket_name=storage.bucket_name,
            metrics_token_secret_arn=self.metrics_token.secret_arn,
            database_read_host=replica_read_host(self, config),
        )
        self.service = Ec2Service(
            self,
            "Service",
            vpc=vpc,
            config=config.ec2,
            repository=repository,
            container_environment=environment,
            log_retention=log_retention(config.log_retention_days),
            log_removal_policy=removal_policy(config.removal_policy),
            image_parameter_name=server_image_parameter_name(config.project, config.env_name),
            https=HttpsOptions.from_config(config),
            node_exporter_image=config.monitoring_host.node_exporter_image if config.features.monitoring_host else None,
        )
        role = self.service.role
        # The API; the runbook's backup checks use the backup-verification role, not this one.
        storage.grant_app_access(role, access=API_ACCESS, principal_scope=role)
        # S3 refusing the app, as logged by the container: the monitoring stack's StorageRejected alarm.
        self.storage_rejected = count_storage_rejections(self.service.container_log_group, Duration.minutes(5))
        database.grant_secret_read(role)
        grant_metrics_token_read(self.metrics_token, role)
        self.service.instance_security_group.connections.allow_to(
            database.instance, ec2.Port.tcp(config.database.port), "EC2 app to PostgreSQL"
        )
        allow_replica_reads(self, config, self.service.instance_security_group, "EC2 app to the read replicas")

        # Read by the monitoring stack through SSM: this stack exists only with features.ec2_service.
        svc = self.service
        publish(self, config, "ec2", "alb-full-name", svc.alb.load_balancer_full_name)
        publish(self, config, "ec2", "target-group-full-name", svc.target_group.target_group_full_name)
        publish(self, config, "ec2", "asg-name", svc.asg.auto_scaling_group_name)
        # The monitoring host (-observability) scrapes these instances with this token.
        publish(self, config, "ec2", "instance-security-group", svc.instance_security_group.security_group_id)
        publish(self, config, "ec2", "metrics-token-secret-arn", self.metrics_token.secret_arn)

        CfnOutput(self, "LoadBalancerDnsName", value=self.service.alb.load_balancer_dns_name)
        CfnOutput(self, "ServiceUrl", value=self.service.url)
        CfnOutput(self, "AutoScalingGroupName", value=self.service.asg.auto_scaling_group_name)
        CfnOutput(
            self,
            "ServerImageParameter",
            value=self.service.image_parameter_name,
            description="CI writes the server image digest (sha256:...) here; instances run it from their next boot",
        )
        self._acknowledge()

    def alarms(self, scope: Construct, thresholds: AlarmConfig) -> list[AlarmSpec]:
        """The service's alarms, its names read in ``scope`` through SSM: this stack exists only
        with features.ec2_service, so an export would block turning the flag off."""
        return self.service.alarms(
            thresholds,
            alb_name=read(scope, self.config, "ec2", "alb-full-name"),
            target_group_name=read(scope, self.config, "ec2", "target-group-full-name"),
            asg_name=read(scope, self.config, "ec2", "asg-name"),
        )

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
