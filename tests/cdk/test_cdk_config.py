"""The typed config and the database connection budget, without synthesizing anything."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from cdk.config import ConfigError, config_from_dict

REPO_ROOT = Path(__file__).resolve().parents[2]

BLOCK = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]["recordings"]
# What docs/deploy.md passes with -c for prod.
PROD_DEPLOY = {
    "alarm_emails": "oncall@corp.internal",
    "domain_name": "recordings.corp.internal",
    "certificate_arn": "arn:aws:acm:eu-west-1:111122223333:certificate/00000000-0000-0000-0000-000000000000",
}


def load(env: str, overrides: dict | None = None, **patch: dict) -> object:
    block = copy.deepcopy(BLOCK)
    for section, values in patch.items():
        if isinstance(values, dict):
            block["profiles"][env].setdefault(section, {}).update(values)
        else:
            block["profiles"][env][section] = values
    if overrides is None:
        overrides = PROD_DEPLOY if env == "prod" else {}
    return config_from_dict(block, env, overrides)


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_connection_budget_stays_under_max_connections(env: str) -> None:
    cfg = load(env)
    lam, ec2, db = cfg.lambda_, cfg.ec2, cfg.database
    # Lambda: one connection per concurrent execution (pool of 1). Reserving profiles cap each
    # function (reaper and migration: 1 each); the others are capped by the account quota.
    if lam.reserve_concurrency:
        lambda_conns = lam.api_reserved_concurrency + lam.s3_events_reserved_concurrency + 1 + 1
    else:
        lambda_conns = lam.concurrency_quota
    ec2_conns = ec2.max_capacity * ec2.uvicorn_workers * (ec2.db_pool_size + ec2.db_max_overflow)
    peak = lambda_conns + ec2_conns + db.reserved_admin_connections
    assert peak == cfg.peak_db_connections
    assert peak < db.max_connections
    # max_connections is set in the parameter group; it must not exceed what the RAM allows.
    assert db.max_connections <= cfg.default_max_connections


def test_budget_violation_is_rejected() -> None:
    with pytest.raises(ConfigError, match="connection budget"):
        load("prod", **{"lambda": {"api_reserved_concurrency": 500, "concurrency_quota": 5000}})
    with pytest.raises(ConfigError, match="connection budget"):
        load("dev", **{"lambda": {"concurrency_quota": 1000}})


def test_max_connections_beyond_instance_memory_is_rejected() -> None:
    with pytest.raises(ConfigError, match="max_connections"):
        load("dev", database={"max_connections": 5000})


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"cors_origins": ["*"]}, "cors_origins"),
        ({"database": {"port": 5432}}, "non-default port"),
        ({"database": {"backup_retention_days": 0}}, "backup_retention_days"),
        ({"network": {"availability_zones": ["eu-west-1a"]}}, "at least 2"),
        ({"log_retention_days": 31}, "log_retention_days"),
    ],
)
def test_unsafe_settings_are_rejected(patch: dict, message: str) -> None:
    block = copy.deepcopy(BLOCK)
    for key, value in patch.items():
        target = block["profiles"]["dev"]
        if isinstance(value, dict):
            target[key].update(value)
        else:
            target[key] = value
    with pytest.raises(ConfigError, match=message):
        config_from_dict(block, "dev")


def test_prod_requires_multi_az_and_deletion_protection() -> None:
    with pytest.raises(ConfigError, match="multi_az"):
        load("prod", database={"deletion_protection": False})


def test_profiles_differ_where_the_issue_says() -> None:
    dev, prod = load("dev"), load("prod")
    assert (dev.database.backup_retention_days, prod.database.backup_retention_days) == (7, 30)
    assert (dev.network.nat_gateways, prod.network.nat_gateways) == (1, len(prod.network.availability_zones))
    assert (dev.lambda_.reserve_concurrency, prod.lambda_.reserve_concurrency) == (False, True)
    assert dev.removal_policy == "destroy"
    assert prod.removal_policy == "retain"
    assert dev.allow_plain_http
    assert not prod.allow_plain_http
    assert prod.https
    assert prod.features.rds_proxy
    assert prod.database.multi_az
    assert prod.database.deletion_protection
    assert dev.features.cloudtrail
    assert prod.features.cloudtrail


def test_unknown_profile_and_unknown_keys_fail_loudly() -> None:
    with pytest.raises(ConfigError, match="unknown profile"):
        config_from_dict(BLOCK, "staging")
    with pytest.raises(ConfigError, match="unknown keys"):
        load("dev", database={"max_conections": 10})


# ---- alarm recipients -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "address", ["alerts@example.com", "ops@mail.example.org", "a@b.example", "x@host.test", "y@z.invalid"]
)
@pytest.mark.parametrize("env", ["dev", "prod"])
def test_placeholder_alarm_recipients_are_refused(env: str, address: str) -> None:
    with pytest.raises(ConfigError, match="placeholder"):
        load(env, {**PROD_DEPLOY, "alarm_emails": f"oncall@corp.internal,{address}"})


def test_prod_refuses_to_synthesize_without_alarm_recipients() -> None:
    with pytest.raises(ConfigError, match="alarm_emails needs at least one"):
        load("prod", {k: v for k, v in PROD_DEPLOY.items() if k != "alarm_emails"})
    # cdk.json's prod profile alone (no -c values) is refused: recipients and HTTPS missing.
    with pytest.raises(ConfigError, match="alarm_emails") as refused:
        load("prod", {})
    assert "HTTPS" in str(refused.value)


def test_alarm_recipients_come_from_the_profile_or_the_command_line() -> None:
    assert load("dev", alarm_emails=["pager@corp.internal"]).alarm_emails == ("pager@corp.internal",)
    cfg = load("prod", {**PROD_DEPLOY, "alarm_emails": "a@corp.internal, b@corp.internal"})
    assert cfg.alarm_emails == ("a@corp.internal", "b@corp.internal")


def test_only_deploy_time_keys_may_be_overridden() -> None:
    with pytest.raises(ConfigError, match="not a deploy-time key"):
        load("dev", {"allow_plain_http": True})


# ---- HTTPS --------------------------------------------------------------------------------------


def test_prod_refuses_to_synthesize_without_https() -> None:
    with pytest.raises(ConfigError, match="HTTPS"):
        load("prod", {"alarm_emails": "oncall@corp.internal"})
    with pytest.raises(ConfigError, match="needs certificate_arn or hosted_zone_id"):
        load("prod", {"alarm_emails": "oncall@corp.internal", "domain_name": "recordings.corp.internal"})
    with pytest.raises(ConfigError, match="allow_plain_http is not allowed"):
        load("prod", allow_plain_http=True)


def test_https_with_a_hosted_zone_needs_a_domain_inside_it() -> None:
    zone = {"alarm_emails": "oncall@corp.internal", "hosted_zone_id": "Z1", "hosted_zone_name": "corp.internal"}
    assert load("prod", {**zone, "domain_name": "api.corp.internal"}).https
    with pytest.raises(ConfigError, match="not in hosted zone"):
        load("prod", {**zone, "domain_name": "api.elsewhere.internal"})
    with pytest.raises(ConfigError, match="go together"):
        load("prod", {"alarm_emails": "oncall@corp.internal", "domain_name": "a.corp.internal", "hosted_zone_id": "Z1"})


def test_dev_says_plainly_that_it_runs_http() -> None:
    cfg = load("dev")
    assert not cfg.https
    assert cfg.allow_plain_http
    with pytest.raises(ConfigError, match="HTTPS"):
        load("dev", allow_plain_http=False)


# ---- Lambda quotas ------------------------------------------------------------------------------


def test_reservations_must_leave_100_unreserved_executions_of_the_declared_quota() -> None:
    # A new account: quota 10. Reserving anything there fails at deploy, so synthesis refuses.
    with pytest.raises(ConfigError, match="unreserved"):
        load("dev", **{"lambda": {"reserve_concurrency": True}})
    prod = load("prod")
    assert prod.lambda_.concurrency_quota - sum(prod.reserved_concurrency.values()) >= 100
    with pytest.raises(ConfigError, match="unreserved"):
        load("prod", **{"lambda": {"concurrency_quota": 200}})
    assert load("dev").reserved_concurrency == {}


def test_rolling_updates_need_room_above_the_minimum() -> None:
    with pytest.raises(ConfigError, match="rolling update"):
        load("dev", ec2={"min_capacity": 2, "max_capacity": 2})
