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
        )
        self.vpc = self.network.vpc
        self.alerts = AlertTopic(self, "Alerts", email=config.alarm_email)
        self.topic = self.alerts.topic
