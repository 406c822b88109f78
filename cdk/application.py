"""Composition root: builds every stack of the selected profile into a CDK App."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_cdk import App, Environment, Stack, Tags

from cdk.config import DeploymentConfig, load_config
from cdk.constructs.monitoring import AlarmSource
from cdk.constructs.storage import StorageRejections
from cdk.nag_acknowledgements import acknowledge_framework_resources
from cdk.stacks.audit import AuditStack
from cdk.stacks.backend import BackendStack
from cdk.stacks.data import DataStack
from cdk.stacks.ec2_service import Ec2ServiceStack
from cdk.stacks.foundation import FoundationStack
from cdk.stacks.github_oidc import GithubOidcStack, GithubSettings
from cdk.stacks.monitoring import MonitoringStack
from cdk.stacks.observability import ObservabilityStack
from cdk.stacks.replica import ReplicaStack

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Deployment:
    app: App
    config: DeploymentConfig
    stacks: dict[str, Stack]


def cdk_json_context() -> dict[str, Any]:
    return json.loads((REPO_ROOT / "cdk.json").read_text())["context"]


def lambda_image_digest(app: App) -> str | None:
    """``-c lambda_image_digest=sha256:...``: the Lambda image CI pushed and scanned."""
    digest = app.node.try_get_context("lambda_image_digest")
    if digest is None:
        return None
    if not re.fullmatch(r"sha256:[0-9a-f]{64}", str(digest)):
        raise ValueError(f"lambda_image_digest must be sha256:<64 hex digits>, not {digest!r}")
    return str(digest)


def build_app(*, context: dict[str, Any] | None = None, outdir: str | None = None) -> Deployment:
    """Build the app for the profile chosen by ``-c env=NAME`` (default from cdk.json).

    app.py adds the cdk-nag plugin on top (``create_app``).

    cdk.json's context is passed as defaults so ``python app.py`` and in-process tests see the
    same profiles as the CLI; values set by the CLI (``-c``) take precedence.
    """
    merged = {**cdk_json_context(), **(context or {})}
    app = App(context=merged, outdir=outdir)
    config = load_config(app.node)
    env = Environment(account=config.account, region=config.region)
    p = config.prefix
    stacks: dict[str, Stack] = {}

    foundation = FoundationStack(app, f"{p}-foundation", config=config, env=env)
    data = DataStack(app, f"{p}-data", config=config, vpc=foundation.vpc, env=env)
    stacks.update(foundation=foundation, data=data)
    if config.features.replication and config.storage.replication_region:
        replica = ReplicaStack(
            app,
            f"{p}-replica",
            config=config,
            env=Environment(account=config.account, region=config.storage.replication_region),
        )
        data.add_stack_dependency(replica, "replication needs the destination bucket")
        stacks["replica"] = replica
    if config.features.cloudtrail:
        stacks["audit"] = AuditStack(app, f"{p}-audit", config=config, env=env)
    backend = BackendStack(
        app,
        f"{p}-backend",
        config=config,
        vpc=foundation.vpc,
        database=data.database,
        storage=data.storage,
        repository=data.repository,
        image_digest=lambda_image_digest(app),
        env=env,
    )
    stacks["backend"] = backend
    ec2_stack = None
    if config.features.ec2_service:
        ec2_stack = Ec2ServiceStack(
            app,
            f"{p}-ec2",
            config=config,
            vpc=foundation.vpc,
            database=data.database,
            storage=data.storage,
            repository=data.repository,
            env=env,
        )
        # Instances start only after the migration custom resource (in backend) succeeded.
        ec2_stack.add_stack_dependency(backend, "database migrations run before the EC2 service")
        stacks["ec2"] = ec2_stack
    stacks["github"] = GithubOidcStack(
        app,
        f"{p}-github",
        config=config,
        github=GithubSettings.from_context(app.node.try_get_context("github")),
        repository=data.repository,
        storage=data.storage,
        database=data.database,
        env=env,
    )
    # Every alarm, in dashboard order: the EC2 path, the Lambda path, the database, the bucket,
    # then S3 refusing the app on either path.
    rejections = {"functions": backend.storage_rejected}
    if ec2_stack is not None:
        rejections["server"] = ec2_stack.storage_rejected
    alarm_sources: list[AlarmSource] = [
        *([ec2_stack] if ec2_stack is not None else []),
        backend,
        data,
        StorageRejections(rejections),
    ]
    stacks["monitoring"] = MonitoringStack(
        app, f"{p}-monitoring", config=config, topic=foundation.topic, sources=alarm_sources, env=env
    )
    if config.features.monitoring_host and ec2_stack is not None:
        stacks["observability"] = ObservabilityStack(
            app,
            f"{p}-observability",
            config=config,
            vpc=foundation.vpc,
            topic=foundation.topic,
            ec2_service=ec2_stack,
            env=env,
        )

    # Values read through SSM carry no implicit ordering: producers deploy first.
    stacks["monitoring"].add_stack_dependency(backend, "reads the HTTP API and function names from SSM")
    if ec2_stack is not None:
        stacks["monitoring"].add_stack_dependency(ec2_stack, "reads the ALB, target group and ASG names from SSM")

    for stack in stacks.values():
        acknowledge_framework_resources(stack)
    # DBProxyTargetGroup declares Tags in its schema nowhere (CloudFormation rejects them).
    untaggable = ["AWS::RDS::DBProxyTargetGroup"]
    Tags.of(app).add("project", config.project, exclude_resource_types=untaggable)
    Tags.of(app).add("environment", config.env_name, exclude_resource_types=untaggable)
    return Deployment(app=app, config=config, stacks=stacks)
