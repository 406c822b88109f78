"""Read replicas in the templates: on in prod, private and encrypted, alarmed at the runbook's
thresholds, and handed to the app by their own endpoints (RDS Proxy has no read-only endpoint for
RDS instances)."""

from __future__ import annotations

import json

import pytest

from cdk.config import ConfigError, config_from_dict
from tests.cdk.conftest import REPO_ROOT


def _instances(profile) -> tuple[tuple[str, dict], list[tuple[str, dict]]]:
    instances = profile.resources("data", "AWS::RDS::DBInstance")
    source = "SourceDBInstanceIdentifier"
    primary = [(k, v["Properties"]) for k, v in instances.items() if source not in v["Properties"]]
    replicas = [(k, v["Properties"]) for k, v in instances.items() if source in v["Properties"]]
    (only_primary,) = primary
    return only_primary, replicas


def test_replicas_follow_the_profile_and_are_on_in_prod(profile, prod) -> None:
    _, replicas = _instances(profile)
    assert len(replicas) == profile.config.database.read_replicas
    assert prod.config.database.read_replicas >= 1


def test_a_replica_copies_the_encrypted_primary_privately_on_its_port_and_parameters(prod) -> None:
    (primary_id, primary), replicas = _instances(prod)
    assert primary["StorageEncrypted"] is True  # a replica inherits encryption and key from here
    for _, replica in replicas:
        assert primary_id in json.dumps(replica["SourceDBInstanceIdentifier"])
        assert replica["PubliclyAccessible"] is False
        assert replica["Port"] == str(prod.config.database.port)
        assert replica["DBParameterGroupName"] == primary["DBParameterGroupName"]  # TLS only, same budget
        assert "MasterUserPassword" not in replica  # the primary's roles and passwords, replicated
        assert replica["EnablePerformanceInsights"] is True
        # Its own security group: being allowed to a replica never allows the primary.
        assert replica["VPCSecurityGroups"] != primary["VPCSecurityGroups"]


def _published(profile, key: str):
    """The value the data stack publishes as SSM parameter ``/<project>/<env>/data/<key>``."""
    name = f"/{profile.config.project}/{profile.config.env_name}/data/{key}"
    (parameter,) = [
        r["Properties"]
        for r in profile.resources("data", "AWS::SSM::Parameter").values()
        if r["Properties"]["Name"] == name
    ]
    return parameter["Value"]


def _reads(profile, stack: str, key: str, value) -> bool:
    """``value`` is a Ref to the deploy-time SSM parameter ``/<project>/<env>/data/<key>``."""
    if not isinstance(value, dict) or "Ref" not in value:
        return False
    parameter = profile.template_json(stack).get("Parameters", {}).get(value["Ref"], {})
    return parameter.get("Default") == f"/{profile.config.project}/{profile.config.env_name}/data/{key}"


def test_the_replica_security_group_admits_only_the_app(prod) -> None:
    """Through SSM (the replica count may go to 0 without an export in use): the data stack
    publishes the replicas' group, the app stacks add their ingress rule to it."""
    (_, replica) = _instances(prod)[1][0]
    (group_ref,) = replica["VPCSecurityGroups"]
    group_id = group_ref["Fn::GetAtt"][0]
    assert _published(prod, "replica-security-group") == group_ref
    group = prod.resources("data", "AWS::EC2::SecurityGroup")[group_id]["Properties"]
    assert "SecurityGroupIngress" not in group
    rules = []
    for key in ("backend", "ec2"):
        for rule in prod.resources(key, "AWS::EC2::SecurityGroupIngress").values():
            if _reads(prod, key, "replica-security-group", rule["Properties"]["GroupId"]):
                rules.append((key, rule["Properties"]))
    assert sorted(key for key, _ in rules) == ["backend", "ec2"]
    for _, rule in rules:
        assert rule["FromPort"] == rule["ToPort"] == prod.config.database.port
        assert "SourceSecurityGroupId" in rule
        assert "CidrIp" not in rule


def test_no_proxy_endpoint_for_reads_because_rds_instances_have_none(prod) -> None:
    """A read-only proxy endpoint exists for Aurora clusters only; for an RDS instance target its
    requests fail. The design reads from the replicas' endpoints instead."""
    assert prod.config.features.rds_proxy
    assert not prod.resources("data", "AWS::RDS::DBProxyEndpoint")


def _replica_refs(profile) -> list[str]:
    return [logical_id for logical_id, _ in _instances(profile)[1]]


def test_the_app_reads_from_every_replica_endpoint_on_both_paths(profile) -> None:
    replica_ids = _replica_refs(profile)
    functions = [
        r["Properties"]
        for k, r in profile.resources("backend", "AWS::Lambda::Function").items()
        if k.startswith("ApiFunction") and "Environment" in r["Properties"]
    ]
    (api,) = functions
    env = api["Environment"]["Variables"]
    (launch,) = profile.resources("ec2", "AWS::EC2::LaunchTemplate").values()
    user_data = launch["Properties"]["LaunchTemplateData"]["UserData"]["Fn::Base64"]["Fn::Join"][1]
    if not replica_ids:
        assert "DATABASE_READ_HOST" not in env
        assert "DATABASE_READ_HOST" not in json.dumps(user_data)
        return
    # Every replica's endpoint, comma-separated, published by the data stack ...
    published = json.dumps(_published(profile, "read-hosts"))
    for replica_id in replica_ids:
        assert json.dumps({"Fn::GetAtt": [replica_id, "Endpoint.Address"]}) in published
    # ... and read at deploy time by the API function and the instances' environment file.
    assert _reads(profile, "backend", "read-hosts", env["DATABASE_READ_HOST"])
    position = next(i for i, part in enumerate(user_data) if isinstance(part, str) and "DATABASE_READ_HOST=" in part)
    assert user_data[position].endswith("DATABASE_READ_HOST=")
    assert _reads(profile, "ec2", "read-hosts", user_data[position + 1])
    assert env["DATABASE_READ_PORT"] == str(profile.config.database.port)
    assert float(env["DATABASE_READ_MAX_LAG_SECONDS"]) == profile.config.database.read_max_lag_seconds


def _replica_alarms(profile) -> dict[str, dict]:
    alarms = profile.resources("monitoring", "AWS::CloudWatch::Alarm")
    return {k: v["Properties"] for k, v in alarms.items() if k.startswith("MonitoringDbReplica")}


@pytest.mark.parametrize(
    ("suffix", "metric", "periods", "operator"),
    [
        ("Lag", "ReplicaLag", 5, "GreaterThanThreshold"),
        ("Cpu", "CPUUtilization", 3, "GreaterThanThreshold"),
        ("Connections", "DatabaseConnections", 5, "GreaterThanThreshold"),
        ("LowFreeableMemory", "FreeableMemory", 3, "LessThanThreshold"),
    ],
)
def test_every_replica_has_the_runbook_alarms(profile, suffix, metric, periods, operator) -> None:
    cfg, t = profile.config, profile.config.alarms
    expected = {
        "Lag": t.db_replica_lag_seconds,
        "Cpu": t.cpu_percent,
        "Connections": round(cfg.database.max_connections * t.db_connections_percent / 100),
        "LowFreeableMemory": int(cfg.database_memory_bytes * t.free_memory_percent / 100),
    }[suffix]
    alarms = _replica_alarms(profile)
    for number in range(1, cfg.database.read_replicas + 1):
        (props,) = [p for k, p in alarms.items() if k.startswith(f"MonitoringDbReplica{number}{suffix}")]
        assert props["MetricName"] == metric
        assert props["Namespace"] == "AWS/RDS"
        assert "DBInstanceIdentifier" in json.dumps(props["Dimensions"])
        assert props["Threshold"] == expected
        assert props["EvaluationPeriods"] == periods == props["DatapointsToAlarm"]
        assert props["ComparisonOperator"] == operator
        assert props["AlarmActions"]
        assert props["OKActions"]
    assert len(alarms) == 4 * cfg.database.read_replicas


def test_prod_without_replicas_is_refused() -> None:
    block = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]["recordings"]
    block["profiles"]["prod"]["database"]["read_replicas"] = 0
    with pytest.raises(ConfigError, match="read_replicas"):
        config_from_dict(block, "prod")
