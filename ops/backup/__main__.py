"""``python -m ops.backup verify-backup|verify-s3-restore``: the backup verifier's entry point.
Run it from an app host (inside the VPC) with the backup-verification role's credentials."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import timedelta

from sqlalchemy.engine import make_url

from ops.backup.verify import (
    CANARY_PREFIX,
    DEFAULT_INSTANCE_CLASS,
    DEFAULT_MAX_SNAPSHOT_AGE_HOURS,
    DEFAULT_MIN_RECORDINGS,
    Credentials,
    verify_backup,
    verify_s3_restore,
)
from service.core.secrets import database_credentials
from service.core.settings import get_settings
from service.core.storage import s3_client


def _credentials(args: argparse.Namespace, database_name: str, region: str) -> Credentials | None:
    if args.database_url:
        url = make_url(args.database_url)
        return Credentials(url.username or "", url.password or "", url.database or database_name)
    if args.secret_arn:
        secret = database_credentials(args.secret_arn)
        return Credentials(secret["username"], secret["password"], secret.get("dbname") or database_name)
    return None


def _verify_backup_command(args: argparse.Namespace) -> int:
    import boto3

    settings = get_settings()
    region = args.region or settings.aws_region
    database_name = args.database_name or settings.database_name
    started = time.monotonic()
    report = verify_backup(
        rds=boto3.client("rds", region_name=region),
        instance_id=args.db_instance,
        credentials=_credentials(args, database_name, region),
        database_name=database_name,
        instance_class=args.instance_class,
        snapshot_id=args.snapshot,
        timeout_seconds=args.timeout_minutes * 60,
        min_recordings=args.min_recordings,
        max_snapshot_age=timedelta(hours=args.max_snapshot_age_hours) if args.max_snapshot_age_hours else None,
    )
    print("\n".join(report.lines()))
    print(f"took:              {time.monotonic() - started:.0f} s")
    return 0 if report.ok else 1


def _verify_s3_command(args: argparse.Namespace) -> int:
    settings = get_settings()
    overrides = {"aws_region": args.region, "s3_endpoint_url": args.endpoint_url}
    settings = settings.model_copy(update={name: value for name, value in overrides.items() if value})
    report = verify_s3_restore(s3=s3_client(settings), bucket=args.bucket or settings.s3_bucket, prefix=args.prefix)
    print("\n".join(report.lines()))
    return 0 if report.ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ops.backup", description="Backup and restore verification")
    commands = parser.add_subparsers(dest="command", required=True)

    backup = commands.add_parser(
        "verify-backup", help="restore the latest RDS snapshot to a temporary instance, check it, delete it"
    )
    backup.add_argument("--db-instance", required=True, help="identifier of the source RDS instance")
    backup.add_argument("--database-name", help="database to check (default: DATABASE_NAME setting)")
    creds = backup.add_mutually_exclusive_group()
    creds.add_argument("--secret-arn", help="Secrets Manager secret with username/password valid in the snapshot")
    creds.add_argument(
        "--database-url", help="URL whose user, password and database are used (host/port: the restored instance)"
    )
    backup.add_argument("--snapshot", help="a specific snapshot identifier instead of the latest")
    backup.add_argument("--instance-class", default=DEFAULT_INSTANCE_CLASS)
    backup.add_argument("--timeout-minutes", type=int, default=60)
    backup.add_argument(
        "--min-recordings",
        type=int,
        default=DEFAULT_MIN_RECORDINGS,
        help=f"fail when fewer recordings rows are restored (default {DEFAULT_MIN_RECORDINGS})",
    )
    backup.add_argument(
        "--max-snapshot-age-hours",
        type=float,
        default=DEFAULT_MAX_SNAPSHOT_AGE_HOURS,
        help=f"fail when the newest snapshot is older (default {DEFAULT_MAX_SNAPSHOT_AGE_HOURS}; 0: no limit)",
    )
    backup.add_argument("--region", help="AWS region (default: AWS_REGION setting)")
    backup.set_defaults(func=_verify_backup_command)

    s3 = commands.add_parser("verify-s3-restore", help="check a deleted object's previous version is recoverable")
    s3.add_argument("--bucket", help="versioned bucket (default: S3_BUCKET setting)")
    s3.add_argument("--prefix", default=CANARY_PREFIX, help="key prefix of the canary object")
    s3.add_argument("--region", help="AWS region (default: AWS_REGION setting)")
    s3.add_argument("--endpoint-url", help="S3 endpoint (default: S3_ENDPOINT_URL setting)")
    s3.set_defaults(func=_verify_s3_command)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
