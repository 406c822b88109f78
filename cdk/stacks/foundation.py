"""Network and alerting: what every other stack of an environment hangs off."""

from __future__ import annotations

from typing import Any

from aws_cdk import Stack
from constructs import Construct

from cdk.config import DeploymentConfig
from cdk.constructs.alerts import AlertTopic
from cdk.constructs.network import Network
from cdk.retention import log_retention


class FoundationStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        net = config.network
        self.network = Network(
            self,
            "Network",
            cidr=net.cidr,
            availability_zones=list(net.availability_zones),
            nat_gateways=net.nat_gateways,
            flow_log_retention=log_retention(net.flow_log_retention_days),
            flow_log_traffic=net.flow_log_traffic,
            interface_endpoints=net.interface_endpoints,
        )
        self.vpc = self.network.vpc
        # Exported whether or not a stack uses them today: otherwise turning a flag off (the EC2
        # service is the only user of the public subnets) drops an export a deployed stack imports.
        for subnet in [*self.vpc.public_subnets, *self.vpc.private_subnets, *self.vpc.isolated_subnets]:
            self.export_value(subnet.subnet_id)
        self.export_value(self.vpc.vpc_id)
        self.export_value(self.vpc.vpc_cidr_block)
        self.alerts = AlertTopic(self, "Alerts", emails=config.alarm_emails)
        self.topic = self.alerts.topic
        # The monitoring host (with features.ec2_service) publishes to the topic under this key.
        self.export_value(self.alerts.key.key_arn)
