"""Backup verification: prove that backups restore, not just that they exist (RUNBOOK.md
"Backup & recovery").

- ``verify_backup``: restore the latest snapshot of an RDS instance into a temporary, private,
  small instance with the source's subnet group and security groups, check the data
  (``check_database``), and delete the temporary instance whatever happened.
- ``verify_s3_restore``: in the versioned recordings bucket, a deleted canary object is recoverable
  from its previous version (removing the delete marker restores it).

CLI: ``python -m ops.backup verify-backup|verify-s3-restore`` (ops/backup/__main__.py). Run it from
inside the VPC (an app host through Session Manager) so the temporary instance is reachable, with
the credentials of the backup-verification role (``BackupVerificationRoleArn`` of the
``-github`` stack): the app hosts' own role may not touch RDS.

A verification that cannot fail proves nothing: by default an empty restore
(``DEFAULT_MIN_RECORDINGS``) and a snapshot older than ``DEFAULT_MAX_SNAPSHOT_AGE_HOURS`` (daily
automated snapshots stopped) both fail it.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

if TYPE_CHECKING:
    from mypy_boto3_rds import RDSClient
    from mypy_boto3_rds.literals import DBInstanceAvailableWaiterName, DBInstanceDeletedWaiterName
    from mypy_boto3_rds.type_defs import DBInstanceTypeDef, DBSnapshotTypeDef, TagTypeDef
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import DeleteMarkerEntryTypeDef, ObjectVersionTypeDef

VERIFY_TAG: TagTypeDef = {"Key": "purpose", "Value": "backup-verification"}
DEFAULT_INSTANCE_CLASS = "db.t4g.micro"
DEFAULT_MIN_RECORDINGS = 1
# RDS takes an automated snapshot every day; a day and a half leaves room for the backup window.
DEFAULT_MAX_SNAPSHOT_AGE_HOURS = 36
CANARY_PREFIX = "ops/restore-canary/"


# --- database content -------------------------------------------------------------------------


@dataclass
class DatabaseCheck:
    recordings: int = 0
    api_keys: int = 0
    sample_recording: str | None = None
    schema_revision: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_database(url: str | URL, *, min_recordings: int = DEFAULT_MIN_RECORDINGS) -> DatabaseCheck:
    """Row counts of ``recordings`` and ``api_keys`` and one recording read back in full."""
    result = DatabaseCheck()
    engine = create_engine(url, poolclass=NullPool, connect_args=_connect_args(url))
    try:
        with engine.connect() as connection:
            tables = set(inspect(connection).get_table_names())
            missing = {"recordings", "api_keys"} - tables
            if missing:
                result.problems.append(f"missing tables: {', '.join(sorted(missing))}")
                return result
            result.recordings = connection.execute(text("SELECT count(*) FROM recordings")).scalar_one()
            result.api_keys = connection.execute(text("SELECT count(*) FROM api_keys")).scalar_one()
            if "alembic_version" in tables:
                result.schema_revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
            if result.recordings < min_recordings:
                result.problems.append(f"{result.recordings} recordings, expected at least {min_recordings}")
            if result.recordings:
                # Every column of the newest row: a damaged page or TOAST value fails the read.
                row = (
                    connection.execute(text("SELECT * FROM recordings ORDER BY created_at DESC LIMIT 1"))
                    .mappings()
                    .first()
                )
                if row is None or not row.get("id") or not row.get("s3_key"):
                    result.problems.append("the newest recording could not be read back")
                else:
                    result.sample_recording = f"{row['id']} ({row['status']}, {row['s3_key']})"
    finally:
        engine.dispose()
    return result


def _connect_args(url: str | URL) -> dict[str, Any]:
    return {"connect_timeout": 10} if make_url(url).get_backend_name() == "postgresql" else {}


# --- RDS snapshot restore ---------------------------------------------------------------------


@dataclass
class BackupReport:
    source_instance: str
    snapshot: str | None = None
    snapshot_time: str | None = None
    temp_instance: str | None = None
    database: DatabaseCheck | None = None
    cleaned_up: bool = False
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.database is not None and self.database.ok and self.cleaned_up

    def lines(self) -> list[str]:
        lines = [
            f"source instance:   {self.source_instance}",
            f"snapshot:          {self.snapshot or '-'} ({self.snapshot_time or '-'})",
            f"temporary instance: {self.temp_instance or '-'} ({'deleted' if self.cleaned_up else 'NOT deleted'})",
        ]
        if self.database:
            db = self.database
            lines += [
                f"recordings rows:   {db.recordings}",
                f"api_keys rows:     {db.api_keys}",
                f"sample recording:  {db.sample_recording or '-'}",
                f"schema revision:   {db.schema_revision or '-'}",
                *[f"problem:           {problem}" for problem in db.problems],
            ]
        if self.error:
            lines.append(f"error:             {self.error}")
        lines.append(f"result:            {'OK' if self.ok else 'FAILED'}")
        return lines


def latest_snapshot(rds: RDSClient, instance_id: str) -> DBSnapshotTypeDef | None:
    """The newest available automated or manual snapshot of ``instance_id``."""
    snapshots: list[DBSnapshotTypeDef] = []
    for page in rds.get_paginator("describe_db_snapshots").paginate(DBInstanceIdentifier=instance_id):
        snapshots += [
            snap
            for snap in page["DBSnapshots"]
            if snap.get("Status") == "available" and snap.get("SnapshotType") in {"automated", "manual"}
        ]
    return max(snapshots, key=lambda snap: snap["SnapshotCreateTime"], default=None)


def temp_instance_id(source: str, now: datetime | None = None) -> str:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d%H%M")
    base = source[: 63 - len(stamp) - len("-verify-")].rstrip("-")
    return f"{base}-verify-{stamp}"


def restore_to_temp(
    rds: RDSClient, *, source: DBInstanceTypeDef, snapshot: DBSnapshotTypeDef, temp_id: str, instance_class: str
) -> DBInstanceTypeDef:
    """Restore ``snapshot`` privately, in the source's subnet group and security groups."""
    return rds.restore_db_instance_from_db_snapshot(
        DBInstanceIdentifier=temp_id,
        DBSnapshotIdentifier=snapshot["DBSnapshotIdentifier"],
        DBInstanceClass=instance_class,
        DBSubnetGroupName=source["DBSubnetGroup"]["DBSubnetGroupName"],
        VpcSecurityGroupIds=[group["VpcSecurityGroupId"] for group in source.get("VpcSecurityGroups", [])],
        PubliclyAccessible=False,
        MultiAZ=False,
        DeletionProtection=False,
        AutoMinorVersionUpgrade=False,
        Tags=[
            VERIFY_TAG,
            {"Key": "source-instance", "Value": source["DBInstanceIdentifier"]},
            {"Key": "snapshot", "Value": snapshot["DBSnapshotIdentifier"]},
        ],
    )["DBInstance"]


def _wait(
    rds: RDSClient,
    waiter: DBInstanceAvailableWaiterName | DBInstanceDeletedWaiterName,
    instance_id: str,
    timeout_seconds: int,
    delay: int,
) -> None:
    attempts = max(1, timeout_seconds // max(delay, 1))
    rds.get_waiter(waiter).wait(
        DBInstanceIdentifier=instance_id, WaiterConfig={"Delay": delay, "MaxAttempts": attempts}
    )


def delete_temp(rds: RDSClient, temp_id: str, *, wait_seconds: int = 0, delay: int = 30) -> None:
    rds.delete_db_instance(DBInstanceIdentifier=temp_id, SkipFinalSnapshot=True, DeleteAutomatedBackups=True)
    if wait_seconds:
        _wait(rds, "db_instance_deleted", temp_id, wait_seconds, delay)


@dataclass
class Credentials:
    username: str
    password: str
    database: str


def verify_backup(
    *,
    rds: RDSClient,
    instance_id: str,
    credentials: Credentials | None = None,
    database_name: str = "recordings",
    instance_class: str = DEFAULT_INSTANCE_CLASS,
    snapshot_id: str | None = None,
    timeout_seconds: int = 3600,
    poll_seconds: int = 30,
    min_recordings: int = DEFAULT_MIN_RECORDINGS,
    max_snapshot_age: timedelta | None = timedelta(hours=DEFAULT_MAX_SNAPSHOT_AGE_HOURS),
    now: datetime | None = None,
    check: Callable[..., DatabaseCheck] | None = None,
) -> BackupReport:
    """Restore, check and delete. Without ``credentials`` the temporary instance gets a fresh
    random master password (the snapshot's may have rotated since). When the newest snapshot is
    older than ``max_snapshot_age`` the verification fails before anything is restored."""
    report = BackupReport(source_instance=instance_id)
    created = False
    try:
        source = rds.describe_db_instances(DBInstanceIdentifier=instance_id)["DBInstances"][0]
        snapshot: DBSnapshotTypeDef | None
        if snapshot_id:
            snapshot = rds.describe_db_snapshots(DBSnapshotIdentifier=snapshot_id)["DBSnapshots"][0]
        else:
            snapshot = latest_snapshot(rds, instance_id)
        if snapshot is None:
            report.error = f"no available snapshot of {instance_id}"
            return report
        report.snapshot = snapshot["DBSnapshotIdentifier"]
        report.snapshot_time = str(snapshot["SnapshotCreateTime"])
        age = (now or datetime.now(UTC)) - snapshot["SnapshotCreateTime"]
        # A snapshot named on purpose may be old; the newest one may not.
        if snapshot_id is None and max_snapshot_age is not None and age > max_snapshot_age:
            hours = age.total_seconds() / 3600
            report.error = (
                f"newest snapshot {report.snapshot} is {hours:.0f} h old "
                f"(at most {max_snapshot_age.total_seconds() / 3600:.0f} h): backups have stopped"
            )
            return report
        report.temp_instance = temp_instance_id(instance_id)
        restore_to_temp(
            rds, source=source, snapshot=snapshot, temp_id=report.temp_instance, instance_class=instance_class
        )
        created = True
        _wait(rds, "db_instance_available", report.temp_instance, timeout_seconds, poll_seconds)
        if credentials is None:
            credentials = Credentials(source["MasterUsername"], secrets.token_urlsafe(24), database_name)
            rds.modify_db_instance(
                DBInstanceIdentifier=report.temp_instance,
                MasterUserPassword=credentials.password,
                ApplyImmediately=True,
            )
            _wait(rds, "db_instance_available", report.temp_instance, timeout_seconds, poll_seconds)
        restored = rds.describe_db_instances(DBInstanceIdentifier=report.temp_instance)["DBInstances"][0]
        url = URL.create(
            "postgresql+psycopg2",
            username=credentials.username,
            password=credentials.password,
            host=restored["Endpoint"]["Address"],
            port=restored["Endpoint"]["Port"],
            database=credentials.database,
            query={"sslmode": "require"},
        )
        report.database = (check or check_database)(url, min_recordings=min_recordings)
    except Exception as exc:  # reported, and the temporary instance is still deleted below
        report.error = f"{type(exc).__name__}: {exc}"
    finally:
        if created and report.temp_instance is not None:  # created: the instance id is set
            try:
                delete_temp(rds, report.temp_instance)
                report.cleaned_up = True
            except Exception as exc:
                report.error = (report.error + "; " if report.error else "") + f"cleanup failed: {exc}"
    return report


# --- S3 versioned restore ---------------------------------------------------------------------


@dataclass
class S3RestoreReport:
    bucket: str
    key: str
    steps: list[str] = field(default_factory=list)
    error: str | None = None
    cleaned_up: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and self.cleaned_up

    def lines(self) -> list[str]:
        out = [f"bucket: {self.bucket}", f"canary: {self.key}", *(f"ok: {step}" for step in self.steps)]
        if self.error:
            out.append(f"error: {self.error}")
        out.append(f"cleanup: {'done' if self.cleaned_up else 'INCOMPLETE'}")
        out.append(f"result: {'OK' if self.ok else 'FAILED'}")
        return out


class VerificationError(Exception):
    pass


def _versions_of(
    s3: S3Client, bucket: str, key: str
) -> tuple[list[ObjectVersionTypeDef], list[DeleteMarkerEntryTypeDef]]:
    listing = s3.list_object_versions(Bucket=bucket, Prefix=key)
    versions = [v for v in listing.get("Versions", []) if v["Key"] == key]
    markers = [m for m in listing.get("DeleteMarkers", []) if m["Key"] == key]
    return versions, markers


def verify_s3_restore(*, s3: S3Client, bucket: str, prefix: str = CANARY_PREFIX) -> S3RestoreReport:
    """Put a canary, delete it, read its previous version, restore it by removing the delete
    marker, and remove every version of the canary again."""
    key = f"{prefix}{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    body = secrets.token_bytes(64)
    report = S3RestoreReport(bucket=bucket, key=key)
    try:
        # Absent on a bucket that never had versioning (the stubs type it as always present).
        status: str | None = s3.get_bucket_versioning(Bucket=bucket).get("Status")
        if status != "Enabled":
            raise VerificationError(f"versioning is {status or 'not enabled'}: deleted objects are lost")
        report.steps.append("versioning enabled")
        version_id = s3.put_object(Bucket=bucket, Key=key, Body=body)["VersionId"]
        report.steps.append(f"canary written (version {version_id})")
        marker_id = s3.delete_object(Bucket=bucket, Key=key).get("VersionId")
        versions, markers = _versions_of(s3, bucket, key)
        latest_marker = next((m for m in markers if m.get("IsLatest")), None)
        if latest_marker is None or latest_marker["VersionId"] != marker_id:
            raise VerificationError("deleting the canary did not leave a delete marker")
        if version_id not in {v["VersionId"] for v in versions}:
            raise VerificationError("the canary's previous version is gone after the delete")
        report.steps.append("delete left a delete marker and kept the previous version")
        if s3.get_object(Bucket=bucket, Key=key, VersionId=version_id)["Body"].read() != body:
            raise VerificationError("the previous version's content differs")
        report.steps.append("previous version readable with identical content")
        s3.delete_object(Bucket=bucket, Key=key, VersionId=marker_id)
        if s3.get_object(Bucket=bucket, Key=key)["Body"].read() != body:
            raise VerificationError("the restored object's content differs")
        report.steps.append("removing the delete marker restored the object")
    except Exception as exc:
        report.error = f"{type(exc).__name__}: {exc}"
    finally:
        try:
            versions, markers = _versions_of(s3, bucket, key)
            for item in versions + markers:
                s3.delete_object(Bucket=bucket, Key=key, VersionId=item["VersionId"])
            report.cleaned_up = not any(_versions_of(s3, bucket, key))
        except Exception as exc:
            report.error = (report.error + "; " if report.error else "") + f"cleanup failed: {exc}"
    return report
