"""Prometheus, Alertmanager and Grafana in AWS: the monitoring host (features.monitoring_host)."""

from __future__ import annotations

from typing import Any

from aws_cdk import Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_sns as sns
from constructs import Construct

from cdk.config import DeploymentConfig
from cdk.constructs.monitoring_host import MonitoringHost
from cdk.cross_stack import read
from cdk.stacks.ec2_service import Ec2ServiceStack


class ObservabilityStack(Stack):
    """The monitoring host, scraping the instances of ``ec2_service`` and alerting to ``topic``
    (the CloudWatch alarms' topic). Its ingress rules on the app instances' security group live
    here, so the EC2 service stack does not depend on it; that group's id comes through SSM
    (cdk/cross_stack.py), so no export ties the EC2 stack to this one."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeploymentConfig,
        vpc: ec2.IVpc,
        topic: sns.ITopic,
        ec2_service: Ec2ServiceStack,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.add_stack_dependency(ec2_service, "scrapes its instances; reads its security group from SSM")
        self.host = MonitoringHost(
            self,
            "MonitoringHost",
            vpc=vpc,
            config=config.monitoring_host,
            environment=config.env_name,
            app_stack_name=ec2_service.stack_name,
            app_security_group=ec2.SecurityGroup.from_security_group_id(
                self, "AppInstances", read(self, config, "ec2", "instance-security-group")
            ),
            topic=topic,
            metrics_token_secret_arn=read(self, config, "ec2", "metrics-token-secret-arn"),
        )
