"""The typed config and the database connection budget, without synthesizing anything."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

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


# ---- the models: types, keys, messages ----------------------------------------------------------


@pytest.mark.parametrize("days", [7, 31, 62, 713, 731])
def test_performance_insights_retention_rds_accepts(days: int) -> None:
    assert (
        load("dev", database={"performance_insights_retention_days": days}).database.performance_insights_retention_days
        == days
    )


@pytest.mark.parametrize("days", [0, 14, 30, 32, 744, 7.0])
def test_performance_insights_retention_rds_refuses_is_named(days: float) -> None:
    with pytest.raises(ConfigError) as refused:
        load("dev", database={"performance_insights_retention_days": days})
    assert str(refused.value).startswith("profile 'dev':")
    assert "database.performance_insights_retention_days" in str(refused.value)


@pytest.mark.parametrize(
    ("patch", "key"),
    [
        ({"database": {"port": "5433"}}, "database.port"),  # no string-to-number coercion
        ({"lambda": {"memory_mb": True}}, "lambda.memory_mb"),  # nor bool-to-int
        ({"features": {"rds_proxy": 1}}, "features.rds_proxy"),
        ({"database": {"database_name": ""}}, "database.database_name"),
        ({"alarms": {"cpu_percent": "80"}}, "alarms.cpu_percent"),
        ({"cors_origins": "https://a.corp.internal"}, "cors_origins"),
        ({"network": {"availability_zones": ["eu-west-1a", 2]}}, "network.availability_zones.1"),
        ({"ec2": {"ami_id": ""}}, "ec2.ami_id"),
    ],
)
def test_wrong_types_name_the_profile_and_the_key(patch: dict, key: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load("dev", **patch)
    message = str(refused.value)
    assert message.startswith("profile 'dev':")
    assert f"\n  {key}: " in message


def test_every_problem_of_a_profile_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as refused:
        load("dev", database={"port": "x", "max_conections": 1, "portt": 2}, ec2={"instance_typ": "m7i.large"})
    lines = str(refused.value).splitlines()
    assert lines[0] == "profile 'dev':"
    assert "  database.port: input should be a valid integer, got 'x'" in lines
    assert "  database: unknown keys ['max_conections', 'portt']" in lines
    assert "  ec2: unknown keys ['instance_typ']" in lines


def test_missing_keys_are_named() -> None:
    block = copy.deepcopy(BLOCK)
    del block["profiles"]["dev"]["network"]["cidr"]
    del block["profiles"]["dev"]["alarms"]
    with pytest.raises(ConfigError) as refused:
        config_from_dict(block, "dev")
    assert "\n  network.cidr: missing" in str(refused.value)
    assert "\n  alarms: missing" in str(refused.value)


def test_optional_keys_may_be_absent_as_cdk_drops_json_nulls() -> None:
    block = copy.deepcopy(BLOCK)
    profile = block["profiles"]["dev"]
    for key in ("account", "domain_name", "certificate_arn", "hosted_zone_id", "hosted_zone_name"):
        profile.pop(key, None)
    profile["ec2"].pop("ami_id", None)
    cfg = config_from_dict(block, "dev")
    assert cfg.account is None
    assert cfg.ec2.ami_id is None


def test_every_section_forbids_unknown_keys_and_is_immutable() -> None:
    cfg = load("dev")
    sections = [
        cfg,
        *(getattr(cfg, name) for name in type(cfg).model_fields if isinstance(getattr(cfg, name), BaseModel)),
    ]
    assert len(sections) == 10
    for section in sections:
        assert section.model_config["extra"] == "forbid"
        assert section.model_config["frozen"] is True
        name = next(iter(type(section).model_fields))
        with pytest.raises(ValidationError):
            setattr(section, name, getattr(section, name))


def test_overrides_are_coerced_by_the_model_and_name_the_profile() -> None:
    cfg = load("prod", {**PROD_DEPLOY, "alarm_emails": "a@corp.internal,,b@corp.internal "})
    assert cfg.alarm_emails == ("a@corp.internal", "b@corp.internal")
    with pytest.raises(ConfigError, match=r"^profile 'dev': -c allow_plain_http: not a deploy-time key"):
        load("dev", {"allow_plain_http": True})
    with pytest.raises(ConfigError, match=r"alarm_emails: 'nobody' is not an e-mail address"):
        load("dev", {"alarm_emails": "nobody"})


def test_invariant_errors_name_the_profile() -> None:
    with pytest.raises(ConfigError, match=r"^profile 'prod':\n  ") as refused:
        load("prod", {})
    assert "\n  prod: alarm_emails needs at least one real recipient" in str(refused.value)


def test_the_profile_name_is_not_a_key_of_the_profile() -> None:
    with pytest.raises(ConfigError, match="env_name"):
        load("dev", env_name="prod")


def test_the_account_comes_from_the_cli_when_the_profile_has_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDK_DEFAULT_ACCOUNT", "111122223333")
    assert load("dev").account == "111122223333"
    monkeypatch.delenv("CDK_DEFAULT_ACCOUNT")
    assert load("dev").account is None
