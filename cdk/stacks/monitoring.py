"""Alarms (runbook thresholds) and the dashboard for one environment."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_sns as sns
from constructs import Construct

from cdk.config import DeploymentConfig
from cdk.constructs.monitoring import AlarmSource, ServiceMonitoring


class MonitoringStack(Stack):
    """Every alarm the ``sources`` own, in their order, notifying ``topic``, on one dashboard."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeploymentConfig,
        topic: sns.ITopic,
        sources: Sequence[AlarmSource],
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        dashboard_name = f"{config.prefix}-service"
        self.monitoring = ServiceMonitoring(self, "Monitoring", topic=topic, dashboard_name=dashboard_name)
        for source in sources:
            for spec in source.alarms(self, config.alarms):
                self.monitoring.add(spec)
        self.monitoring.finish()
        CfnOutput(self, "DashboardName", value=dashboard_name)

    @property
    def alarms(self) -> dict[str, cloudwatch.Alarm]:
        return self.monitoring.alarms
