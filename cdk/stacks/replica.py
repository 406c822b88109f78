"""Destination bucket for cross-region replication, deployed in the replica region."""

from __future__ import annotations

from typing import Any

from aws_cdk import Stack
from constructs import Construct

from cdk.config import DeploymentConfig
from cdk.constructs.storage import ReplicaBucket, replica_bucket_name


class ReplicaStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, termination_protection=config.is_production, **kwargs)
        self.replica = ReplicaBucket(
            self,
            "Replica",
            bucket_name=replica_bucket_name(
                name_prefix=f"{config.project}-{config.env_name}", replica_region=self.region
            ),
            config=config.storage,
        )
