"""The backup verifier's pure parts: temporary instance names, the report, the CLI's defaults.
(The RDS, S3 and database checks themselves: tests/ops/test_backup.py.)"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from ops.backup import verify as backup
from ops.backup.__main__ import build_parser

# RDS DB instance identifiers: 1-63 letters, digits and hyphens, starting with a letter, no two
# consecutive hyphens, not ending with a hyphen.
RDS_IDENTIFIER = re.compile(r"[A-Za-z](?:-?[A-Za-z0-9])*")


def _parser():
    return build_parser()


def test_cli_defaults_cannot_pass_an_empty_or_stale_backup():
    args = _parser().parse_args(["verify-backup", "--db-instance", "recordings-prod-db"])
    assert args.min_recordings >= 1
    assert 0 < args.max_snapshot_age_hours <= 48


def test_temp_instance_ids_are_valid_rds_identifiers():
    name = backup.temp_instance_id("x" * 70)
    assert len(name) <= 63
    assert name[0].isalpha()
    assert "--" not in name
    assert not name.endswith("-")


@pytest.mark.parametrize("source", ["recordings-prod-db", "a", "x" * 63, "db-" * 30, "x" * 54 + "-" * 9])
def test_temp_instance_ids_name_the_source_and_the_minute(source):
    name = backup.temp_instance_id(source, now=datetime(2026, 3, 1, 4, 5, tzinfo=UTC))
    assert len(name) <= 63
    assert RDS_IDENTIFIER.fullmatch(name), name
    assert name.endswith("-verify-202603010405")
    assert source.startswith(name.removesuffix("-verify-202603010405"))


def test_one_database_problem_fails_the_check():
    assert backup.DatabaseCheck(recordings=3, api_keys=1).ok
    assert not backup.DatabaseCheck(recordings=3, api_keys=1, problems=["no recordings table"]).ok
