"""Every key of a profile is used by some stack, and Performance Insights keeps its data as long
as the profile says.

The stacks are built (not synthesized) with a configuration that records each attribute read;
a key nobody reads is a setting that silently does nothing.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from cdk import application
from cdk.config import (
    PERFORMANCE_INSIGHTS_RETENTION_DAYS,
    VALIDATION_ONLY_KEYS,
    DeploymentConfig,
    invariant_errors,
)
from tests.cdk.conftest import DEPLOY_CONTEXT, PROFILES


class Tracked:
    """A read-only view of a config model that records the path of every field read through it.
    Properties run against the view, so what they read is recorded too."""

    def __init__(self, model: BaseModel, path: str, reads: set[str]) -> None:
        object.__setattr__(self, "_model", model)
        object.__setattr__(self, "_path", path)
        object.__setattr__(self, "_reads", reads)

    def __getattr__(self, name: str) -> Any:
        model: BaseModel = object.__getattribute__(self, "_model")
        path = f"{object.__getattribute__(self, '_path')}{name}"
        reads: set[str] = object.__getattribute__(self, "_reads")
        if name in type(model).model_fields:
            reads.add(path)
            value = getattr(model, name)
            return Tracked(value, f"{path}.", reads) if isinstance(value, BaseModel) else value
        attribute = getattr(type(model), name, None)
        if isinstance(attribute, property):
            return attribute.fget(self)
        return getattr(model, name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("the configuration is read-only")


def leaf_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    keys = set()
    for name, field in model.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            keys |= leaf_keys(field.annotation, f"{prefix}{name}.")
        else:
            keys.add(f"{prefix}{name}")
    return keys


def test_leaf_keys_cover_the_nested_sections() -> None:
    keys = leaf_keys(DeploymentConfig)
    assert "database.performance_insights_retention_days" in keys
    assert "lambda_.memory_mb" in keys
    assert "database" not in keys


def test_the_tracked_view_records_fields_and_what_properties_read() -> None:
    from tests.cdk.test_cdk_config import load

    reads: set[str] = set()
    cfg = Tracked(load("prod"), "", reads)
    assert cfg.database.port == 5433
    assert cfg.reserved_concurrency  # a property: reads lambda_ and features keys
    assert {"database.port", "lambda_.reserve_concurrency", "lambda_.s3_events_reserved_concurrency"} <= reads
    assert "database.max_connections" not in reads


@pytest.fixture(scope="module")
def keys_read(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    reads: set[str] = set()
    original = application.load_config

    def tracked_config(node: Any) -> Any:
        return Tracked(original(node), "", reads)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(application, "load_config", tracked_config)
        for profile in PROFILES:
            outdir = tmp_path_factory.mktemp(f"usage-{profile}")
            application.build_app(context={"env": profile, **DEPLOY_CONTEXT[profile]}, outdir=str(outdir))
    return reads


def test_every_config_key_is_read_by_some_stack(keys_read: set[str]) -> None:
    """Over the profiles the tests synthesize, each key is read while the stacks are built
    (reads during validation do not count), except the declared validation-only keys, which no
    stack may read either (else the declaration is stale)."""
    unread = leaf_keys(DeploymentConfig) - keys_read
    assert unread == VALIDATION_ONLY_KEYS, f"keys no stack reads: {sorted(unread - VALIDATION_ONLY_KEYS)}"


@pytest.mark.parametrize("env", PROFILES)
def test_validation_only_keys_are_read_by_the_invariants(env: str) -> None:
    from tests.cdk.test_cdk_config import load

    reads: set[str] = set()
    assert invariant_errors(Tracked(load(env), "", reads)) == []
    assert reads >= VALIDATION_ONLY_KEYS
    assert leaf_keys(DeploymentConfig) >= VALIDATION_ONLY_KEYS


@pytest.mark.parametrize("days", PERFORMANCE_INSIGHTS_RETENTION_DAYS)
def test_every_allowed_performance_insights_retention_maps_to_its_rds_value(days: int) -> None:
    from cdk.constructs.database import performance_insights_retention

    retention = performance_insights_retention(days)
    expected = {7: "DEFAULT", 731: "LONG_TERM"}.get(days, f"MONTHS_{days // 31}")
    assert retention.name == expected


@pytest.mark.parametrize("days", [0, 14, 30, 32, 744])
def test_other_performance_insights_retentions_are_refused(days: int) -> None:
    from cdk.constructs.database import performance_insights_retention

    with pytest.raises(ValueError, match="Performance Insights"):
        performance_insights_retention(days)


def test_every_instance_keeps_performance_insights_as_configured(profile) -> None:
    instances = profile.resources("data", "AWS::RDS::DBInstance")
    assert len(instances) == 1 + profile.config.database.read_replicas
    days = profile.config.database.performance_insights_retention_days
    for properties in (instance["Properties"] for instance in instances.values()):
        assert properties["EnablePerformanceInsights"] is True
        assert properties["PerformanceInsightsRetentionPeriod"] == days


def test_a_longer_performance_insights_retention_reaches_the_template() -> None:
    """The profiles keep the free 7 days; a profile asking for two months gets two months."""
    from aws_cdk import App, Stack
    from aws_cdk import aws_ec2 as ec2
    from aws_cdk import aws_logs as logs
    from aws_cdk.assertions import Template

    from cdk.constructs.database import Database
    from tests.cdk.test_cdk_config import load

    config = load("prod").database.model_copy(update={"performance_insights_retention_days": 62})
    stack = Stack(App(), "PerformanceInsights", env={"region": "eu-west-1"})
    vpc = ec2.Vpc(
        stack,
        "Vpc",
        subnet_configuration=[
            ec2.SubnetConfiguration(name="egress", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            ec2.SubnetConfiguration(name="isolated", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
            ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC),
        ],
    )
    Database(
        stack,
        "Database",
        vpc=vpc,
        config=config,
        enable_proxy=False,
        proxy_max_connections_percent=10,
        log_retention=logs.RetentionDays.ONE_WEEK,
    )
    instances = Template.from_stack(stack).find_resources("AWS::RDS::DBInstance")
    assert len(instances) == 1 + config.read_replicas
    assert {i["Properties"]["PerformanceInsightsRetentionPeriod"] for i in instances.values()} == {62}
