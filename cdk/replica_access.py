"""The read replicas as the other stacks see them: through SSM parameters the data stack writes.

How many replicas there are is a profile setting (``database.read_replicas``); a CloudFormation
export of a replica's endpoint or security group would block setting it to 0 while a stack
imports it, so these values travel as parameters (cdk/cross_stack.py), like the proxy's.
"""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from cdk.config import DeploymentConfig
from cdk.constructs.database import Database
from cdk.cross_stack import publish, read


def publish_replicas(stack: Stack, config: DeploymentConfig, database: Database) -> None:
    """In the data stack: the replicas' endpoints (DATABASE_READ_HOST), security group and ids."""
    if not database.replicas or database.replica_security_group is None:
        return
    publish(stack, config, "data", "read-hosts", str(database.read_hosts))
    publish(stack, config, "data", "replica-security-group", database.replica_security_group.security_group_id)
    for number, replica in enumerate(database.replicas, start=1):
        publish(stack, config, "data", f"replica-{number}-id", replica.instance_identifier)


def replica_read_host(scope: Construct, config: DeploymentConfig) -> str | None:
    """DATABASE_READ_HOST for a stack that runs the app: every replica's endpoint, comma-separated;
    None without replicas."""
    if config.database.read_replicas == 0:
        return None
    return read(scope, config, "data", "read-hosts")


def allow_replica_reads(scope: Construct, config: DeploymentConfig, peer: ec2.IConnectable, description: str) -> None:
    """Let ``peer`` reach the replicas on the database port; the ingress rule on the replicas'
    security group lives in ``scope``'s stack. Nothing without replicas."""
    if config.database.read_replicas == 0:
        return
    group = ec2.SecurityGroup.from_security_group_id(
        scope, "ReadReplicas", read(scope, config, "data", "replica-security-group")
    )
    peer.connections.allow_to(group, ec2.Port.tcp(config.database.port), description)


def replica_identifiers(scope: Construct, config: DeploymentConfig) -> list[str]:
    """The replicas' DBInstanceIdentifier, in order (their CloudWatch dimension)."""
    return [
        read(scope, config, "data", f"replica-{number}-id") for number in range(1, config.database.read_replicas + 1)
    ]
