"""The typed config and the database connection budget, without synthesizing anything."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from cdk.config import ConfigError, config_from_dict

REPO_ROOT = Path(__file__).resolve().parents[2]

BLOCK = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]["recordings"]


def load(env: str, **patch: dict) -> object:
    block = copy.deepcopy(BLOCK)
    for section, values in patch.items():
        block["profiles"][env].setdefault(section, {}).update(values)
    return config_from_dict(block, env)


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_connection_budget_stays_under_max_connections(env: str) -> None:
    cfg = load(env)
    lam, ec2, db = cfg.lambda_, cfg.ec2, cfg.database
    # Lambda: one connection per concurrent execution (pool of 1); reaper and migration: 1 each.
    lambda_conns = lam.api_reserved_concurrency + lam.s3_events_reserved_concurrency + 1 + 1
    ec2_conns = ec2.max_capacity * ec2.uvicorn_workers * (ec2.db_pool_size + ec2.db_max_overflow)
    peak = lambda_conns + ec2_conns + db.reserved_admin_connections
    assert peak == cfg.peak_db_connections
    assert peak < db.max_connections
    # max_connections is set in the parameter group; it must not exceed what the RAM allows.
    assert db.max_connections <= cfg.default_max_connections


def test_budget_violation_is_rejected() -> None:
    with pytest.raises(ConfigError, match="connection budget"):
        load("dev", **{"lambda": {"api_reserved_concurrency": 500}})


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
