"""Backup verification: the database check against the real local PostgreSQL, the RDS
restore/check/delete cycle and the S3 versioned-restore check against moto."""

from __future__ import annotations

import argparse
import os
import uuid
from collections.abc import Iterator
from datetime import timedelta

import boto3
import pytest
from moto import mock_aws
from sqlalchemy import create_engine, text

from ops.backup import verify as backup
from tests.pg_server import scratch_database

ADMIN_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REGION = "eu-west-1"

# The two tables as the app's models define them (the columns the check reads).
SCHEMA = """
CREATE TABLE api_keys (
    id uuid PRIMARY KEY, owner varchar(128) NOT NULL, name varchar(100) NOT NULL,
    prefix varchar(32) NOT NULL UNIQUE, secret_hash varchar(64) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(), last_used_at timestamptz, revoked_at timestamptz
);
CREATE TABLE recordings (
    id uuid PRIMARY KEY, owner varchar(128) NOT NULL, title varchar(200), filename varchar(255) NOT NULL,
    content_type varchar(255) NOT NULL, size_bytes bigint NOT NULL, s3_key varchar(512) NOT NULL UNIQUE,
    upload_method varchar(16) NOT NULL, status varchar(16) NOT NULL, metadata jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now()
);
"""


@pytest.fixture
def scratch() -> Iterator[str]:
    """A throwaway PostgreSQL database with the two tables; dropped afterwards."""
    with scratch_database(ADMIN_URL, "ops_backup") as url:
        engine = create_engine(url)
        with engine.begin() as connection:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    connection.execute(text(statement))
        engine.dispose()
        yield url


def _insert_recordings(url: str, count: int) -> str:
    engine = create_engine(url)
    newest = ""
    with engine.begin() as connection:
        for index in range(count):
            newest = f"tenant-a/{uuid.uuid4()}"
            connection.execute(
                text(
                    "INSERT INTO recordings (id, owner, filename, content_type, size_bytes, s3_key, upload_method,"
                    " status, created_at) VALUES (:id, 'tenant-a', 'a.wav', 'audio/wav', 10, :key, 'POST',"
                    " 'available', now() + make_interval(secs => :offset))"
                ),
                {"id": uuid.uuid4(), "key": newest, "offset": index},
            )
        connection.execute(
            text(
                "INSERT INTO api_keys (id, owner, name, prefix, secret_hash) VALUES (:id, 'tenant-a', 'k', 'rk_1', 'x')"
            ),
            {"id": uuid.uuid4()},
        )
    engine.dispose()
    return newest


def test_database_check_counts_rows_and_reads_the_newest_recording(scratch):
    newest_key = _insert_recordings(scratch, 3)
    result = backup.check_database(scratch, min_recordings=3)
    assert result.ok, result.problems
    assert result.recordings == 3
    assert result.api_keys == 1
    assert newest_key in result.sample_recording


def test_database_check_fails_on_too_few_rows_and_missing_tables(scratch):
    assert not backup.check_database(scratch, min_recordings=1).ok
    engine = create_engine(scratch)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE api_keys"))
    engine.dispose()
    result = backup.check_database(scratch)
    assert result.problems == ["missing tables: api_keys"]


# --- RDS (moto) -------------------------------------------------------------------------------


@pytest.fixture
def aws(monkeypatch):
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        yield


@pytest.fixture
def rds_source(aws) -> dict:
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.40.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.40.{i}.0/24", AvailabilityZone=f"{REGION}{z}")["Subnet"]["SubnetId"]
        for i, z in ((1, "a"), (2, "b"))
    ]
    group = ec2.create_security_group(GroupName="db", Description="database", VpcId=vpc)["GroupId"]
    rds = boto3.client("rds", region_name=REGION)
    rds.create_db_subnet_group(DBSubnetGroupName="recordings-db", DBSubnetGroupDescription="db", SubnetIds=subnets)
    rds.create_db_instance(
        DBInstanceIdentifier="recordings-prod-db",
        DBInstanceClass="db.m7g.large",
        Engine="postgres",
        MasterUsername="recordings_admin",
        MasterUserPassword="original-password",
        AllocatedStorage=100,
        DBSubnetGroupName="recordings-db",
        VpcSecurityGroupIds=[group],
        Port=5433,
        DBName="recordings",
        BackupRetentionPeriod=7,
    )
    rds.create_db_snapshot(DBInstanceIdentifier="recordings-prod-db", DBSnapshotIdentifier="before-migration")
    rds.create_db_snapshot(DBInstanceIdentifier="recordings-prod-db", DBSnapshotIdentifier="nightly-manual")
    return {"rds": rds, "security_group": group}


def _instances(rds) -> set[str]:
    return {db["DBInstanceIdentifier"] for db in rds.describe_db_instances()["DBInstances"]}


def test_latest_snapshot_is_the_newest_available_one(rds_source):
    snapshot = backup.latest_snapshot(rds_source["rds"], "recordings-prod-db")
    assert snapshot["DBSnapshotIdentifier"] == "nightly-manual"
    assert backup.latest_snapshot(rds_source["rds"], "some-other-db") is None


def test_verify_backup_restores_privately_checks_and_deletes(rds_source):
    rds = rds_source["rds"]
    seen: dict = {}

    def fake_check(url, *, min_recordings):
        # The restored instance's endpoint, and what the temporary instance looks like meanwhile.
        seen["url"] = url
        temp = rds.describe_db_instances(DBInstanceIdentifier=url.host.split(".")[0])["DBInstances"][0]
        seen["temp"] = temp
        seen["tags"] = {t["Key"]: t["Value"] for t in temp.get("TagList", [])}
        return backup.DatabaseCheck(recordings=42, api_keys=3, sample_recording="r1")

    report = backup.verify_backup(rds=rds, instance_id="recordings-prod-db", poll_seconds=1, check=fake_check)
    assert report.ok, report.lines()
    assert report.snapshot == "nightly-manual"
    temp = seen["temp"]
    assert temp["DBInstanceClass"] == backup.DEFAULT_INSTANCE_CLASS
    assert temp["DBSubnetGroup"]["DBSubnetGroupName"] == "recordings-db"
    assert [g["VpcSecurityGroupId"] for g in temp["VpcSecurityGroups"]] == [rds_source["security_group"]]
    assert not temp.get("PubliclyAccessible", False)
    assert seen["tags"]["purpose"] == "backup-verification"
    assert seen["tags"]["source-instance"] == "recordings-prod-db"
    url = seen["url"]
    assert url.port == 5433
    assert url.username == "recordings_admin"
    assert url.password != "original-password"  # a fresh password was set on the temporary copy
    assert url.database == "recordings"
    assert report.temp_instance not in _instances(rds)
    assert _instances(rds) == {"recordings-prod-db"}
    assert "recordings rows:   42" in report.lines()


def test_temporary_instance_is_deleted_when_the_check_fails(rds_source):
    rds = rds_source["rds"]

    def broken_check(url, *, min_recordings):
        raise ConnectionError("could not connect")

    report = backup.verify_backup(rds=rds, instance_id="recordings-prod-db", poll_seconds=1, check=broken_check)
    assert not report.ok
    assert "could not connect" in report.error
    assert report.cleaned_up
    assert _instances(rds) == {"recordings-prod-db"}


def test_failed_data_check_fails_the_verification(rds_source):
    def empty(url, *, min_recordings):
        return backup.DatabaseCheck(problems=["0 recordings, expected at least 1"])

    report = backup.verify_backup(rds=rds_source["rds"], instance_id="recordings-prod-db", poll_seconds=1, check=empty)
    assert not report.ok
    assert report.cleaned_up


def test_missing_instance_is_reported_without_creating_anything(rds_source):
    report = backup.verify_backup(rds=rds_source["rds"], instance_id="nope", poll_seconds=1)
    assert not report.ok
    assert "nope" in report.error or "DBInstanceNotFound" in report.error
    assert _instances(rds_source["rds"]) == {"recordings-prod-db"}


def test_an_empty_restore_fails_by_default(scratch):
    result = backup.check_database(scratch)  # the tables exist, no recording survived
    assert not result.ok
    assert result.problems == ["0 recordings, expected at least 1"]


def test_a_stale_newest_snapshot_fails_before_anything_is_restored(rds_source):
    rds = rds_source["rds"]
    newest = backup.latest_snapshot(rds, "recordings-prod-db")["SnapshotCreateTime"]

    def never(url, *, min_recordings):
        raise AssertionError("nothing should be restored or checked")

    report = backup.verify_backup(
        rds=rds, instance_id="recordings-prod-db", poll_seconds=1, now=newest + timedelta(hours=37), check=never
    )
    assert not report.ok
    assert "37 h old" in report.error
    assert report.temp_instance is None
    assert _instances(rds) == {"recordings-prod-db"}
    fresh = backup.verify_backup(
        rds=rds,
        instance_id="recordings-prod-db",
        poll_seconds=1,
        now=newest + timedelta(hours=35),
        check=lambda url, *, min_recordings: backup.DatabaseCheck(recordings=min_recordings),
    )
    assert fresh.ok, fresh.lines()


# --- S3 (moto) --------------------------------------------------------------------------------


def _bucket(versioned: bool) -> tuple:
    s3 = boto3.client("s3", region_name=REGION)
    name = f"recordings-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
    if versioned:
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket=name, Key="tenant-a/rec-1", Body=b"keep me")
    return s3, name


def test_s3_restore_check_passes_on_a_versioned_bucket_and_cleans_up(aws):
    s3, bucket = _bucket(versioned=True)
    report = backup.verify_s3_restore(s3=s3, bucket=bucket)
    assert report.ok, report.lines()
    assert any("restored" in step for step in report.steps)
    listing = s3.list_object_versions(Bucket=bucket)
    keys = {v["Key"] for v in listing.get("Versions", [])} | {m["Key"] for m in listing.get("DeleteMarkers", [])}
    assert keys == {"tenant-a/rec-1"}, "the canary left versions behind"


def test_s3_restore_check_fails_without_versioning(aws):
    s3, bucket = _bucket(versioned=False)
    report = backup.verify_s3_restore(s3=s3, bucket=bucket)
    assert not report.ok
    assert "versioning" in report.error
    assert s3.get_object(Bucket=bucket, Key="tenant-a/rec-1")["Body"].read() == b"keep me"


# --- CLI wiring -------------------------------------------------------------------------------


@pytest.fixture
def cli_settings(monkeypatch) -> Iterator[None]:
    """Settings for the CLI handlers: AWS endpoints (moto intercepts them), no local S3 server."""
    from service.core.settings import get_settings

    monkeypatch.setenv("ENVIRONMENT", "test")
    monkeypatch.delenv("S3_ENDPOINT_URL", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _parser() -> argparse.ArgumentParser:
    from ops.backup.__main__ import build_parser

    return build_parser()


def test_cli_verify_s3_restore_reports_and_returns_exit_code(aws, cli_settings, capsys):
    _, bucket = _bucket(versioned=True)
    args = _parser().parse_args(["verify-s3-restore", "--bucket", bucket, "--region", REGION])
    assert args.func(args) == 0
    assert "result: OK" in capsys.readouterr().out
    unversioned = _bucket(versioned=False)[1]
    args = _parser().parse_args(["verify-s3-restore", "--bucket", unversioned, "--region", REGION])
    assert args.func(args) == 1
    assert "result: FAILED" in capsys.readouterr().out


def test_cli_verify_backup_with_a_url_override(rds_source, cli_settings, capsys, monkeypatch):
    checked = []
    monkeypatch.setattr(
        backup,
        "check_database",
        lambda url, *, min_recordings: checked.append(url) or backup.DatabaseCheck(recordings=1, api_keys=1),
    )
    args = _parser().parse_args(
        [
            "verify-backup",
            "--db-instance",
            "recordings-prod-db",
            "--database-url",
            "postgresql://auditor:pw@ignored-host:1/recordings",
            "--region",
            REGION,
        ]
    )
    assert args.func(args) == 0, capsys.readouterr().out
    assert "result:            OK" in capsys.readouterr().out
    assert checked[0].username == "auditor"
    assert checked[0].password == "pw"
    assert checked[0].host.startswith("recordings-prod-db-verify-")
    assert _instances(rds_source["rds"]) == {"recordings-prod-db"}
    with pytest.raises(SystemExit):
        _parser().parse_args(["verify-backup", "--db-instance", "x", "--secret-arn", "a", "--database-url", "b"])
