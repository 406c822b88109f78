"""Account audit trail (feature flag ``cloudtrail``)."""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration, Stack
from constructs import Construct

from cdk.config import DeploymentConfig
from cdk.constructs.audit import AuditTrail
from cdk.retention import removal_policy


class AuditStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, termination_protection=config.is_production, **kwargs)
        self.audit = AuditTrail(
            self,
            "Audit",
            retention=Duration.days(max(config.log_retention_days, 365)),
            removal_policy=removal_policy(config.removal_policy),
        )
