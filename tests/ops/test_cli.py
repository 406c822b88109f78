"""The CLI as an operator runs it: a real process, configuration from the environment."""

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args, env):
    return subprocess.run(
        [sys.executable, "-m", "service", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_api_key_lifecycle_through_the_cli(settings):
    env = {
        **os.environ,
        "ENVIRONMENT": "test",
        "DATABASE_URL": settings.database_url.get_secret_value(),
        "S3_ENDPOINT_URL": settings.s3_endpoint_url,
        "S3_BUCKET": settings.s3_bucket,
    }
    created = _cli("api-keys", "create", "--owner", "carol", "--name", "laptop", env=env)
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]
    assert token.startswith("rk_")
    prefix = token.split("_")[1]

    listed = _cli("api-keys", "list", "--owner", "carol", env=env)
    assert prefix in listed.stdout
    assert "active" in listed.stdout
    assert token.split("_", 2)[2] not in listed.stdout  # the secret is shown once only

    from service.auth.principal import Principal
    from service.auth.sessions import start_session
    from service.core.db import session_scope

    signed_in = Principal(tenant="carol", subject=f"api-key:{prefix}", method="api_key")
    with session_scope(settings) as session:
        for _ in range(2):
            start_session(session=session, settings=settings, principal=signed_in)
    revoked = _cli("api-keys", "revoke", prefix, env=env)
    assert revoked.returncode == 0, revoked.stderr
    assert f"revoked API key {prefix}; ended 2 browser sessions" in revoked.stdout
    assert "revoked" in _cli("api-keys", "list", "--owner", "carol", env=env).stdout
    assert _cli("api-keys", "revoke", prefix, env=env).returncode == 1

    bad = _cli("api-keys", "create", "--owner", "bad/owner", env=env)
    assert bad.returncode == 2
    assert "owner" in bad.stderr


def test_migrate_and_reap_commands(tmp_path, settings):
    db = tmp_path / "cli.db"
    env = {
        **os.environ,
        "ENVIRONMENT": "test",
        "DATABASE_URL": f"sqlite:///{db}",
        "S3_ENDPOINT_URL": settings.s3_endpoint_url,
        "S3_BUCKET": settings.s3_bucket,
    }
    migrated = _cli("migrate", env=env)
    assert migrated.returncode == 0, migrated.stderr
    assert "0003_browser_uploads" in migrated.stdout  # the head revision
    with create_engine(f"sqlite:///{db}").connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM recordings")).scalar() == 0
    reaped = _cli("reap", env=env)
    assert reaped.returncode == 0, reaped.stderr
    assert "expired 0" in reaped.stdout
