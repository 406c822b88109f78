"""Database credentials from a rotating secret: a rejected password makes the engine fetch the
secret once more and retry. The shared test server trusts every login, so these tests start a
small PostgreSQL of their own that checks passwords (scram-sha-256)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from service.core.db import get_engine, is_authentication_failure, reset_engine
from tests.conftest import make_settings
from tests.pg_server import free_port

ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:rds!db-0123-AbCdEf"


def _bindir() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return os.path.dirname(found[-1]) if found else None


@pytest.fixture(scope="module")
def password_server() -> Iterator[int]:
    bindir = _bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries are not installed")
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    home = tempfile.mkdtemp(prefix="pg-scram-")
    data = os.path.join(home, "data")
    pwfile = os.path.join(home, "pw")
    with open(pwfile, "w") as handle:
        handle.write("admin-password\n")
    if as_postgres:  # initdb refuses to run as root: the cluster belongs to postgres
        for path in (home, pwfile):
            shutil.chown(path, "postgres")
    port = free_port()
    subprocess.run(
        [*as_postgres, f"{bindir}/initdb", "-D", data, "-U", "postgres", "-A", "scram-sha-256", f"--pwfile={pwfile}"],
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        [*as_postgres, f"{bindir}/pg_ctl", "-D", data, "-o", options, "-l", f"{home}/log", "-w", "start"],
        check=True,
        capture_output=True,
    )
    try:
        env = {**os.environ, "PGPASSWORD": "admin-password"}
        for statement in ("CREATE ROLE app LOGIN PASSWORD 'rotated-password'", "CREATE DATABASE recordings OWNER app"):
            subprocess.run(
                [
                    f"{bindir}/psql",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(port),
                    "-U",
                    "postgres",
                    "-d",
                    "postgres",
                    "-c",
                    statement,
                ],
                check=True,
                capture_output=True,
                env=env,
            )
        yield port
    finally:
        subprocess.run([*as_postgres, f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


class FakeSecretStore:
    """Secrets Manager as Powertools' cache sees it: the cached value until ``refresh``."""

    def __init__(self, *values: dict) -> None:
        self.values = list(values)
        self.cached = self.values[0]
        self.fetches: list[bool] = []

    def __call__(self, arn: str, *, refresh: bool = False) -> dict:
        assert arn == ARN
        self.fetches.append(refresh)
        if refresh:
            self.values = self.values[1:] or self.values
            self.cached = self.values[0]
        return dict(self.cached)


def secret(password: str) -> dict:
    return {"username": "app", "password": password, "engine": "postgres", "dbname": "recordings"}


@pytest.fixture
def lambda_settings(password_server, s3_endpoint):
    settings = make_settings(
        "sqlite://",
        s3_endpoint,
        runtime="lambda",
        database_secret_arn=ARN,
        database_host="127.0.0.1",
        database_port=password_server,
    )
    yield settings
    reset_engine(settings)


def test_rejected_credentials_are_refetched_once_and_used(lambda_settings, monkeypatch):
    # GIVEN the cached secret still holds the password from before the rotation
    store = FakeSecretStore(secret("old-password"), secret("rotated-password"))
    monkeypatch.setattr("service.core.secrets.database_credentials", store)

    # WHEN the service connects
    with get_engine(lambda_settings).connect() as connection:
        user = connection.execute(text("SELECT current_user")).scalar_one()

    # THEN the rejected login made it fetch the secret again, bypassing the cache, and connect
    assert user == "app"
    assert store.fetches[-2:] == [False, True]
    # A later new connection (the first one is still checked out) uses the refreshed value directly.
    fetched = len(store.fetches)
    with get_engine(lambda_settings).connect() as first, get_engine(lambda_settings).connect() as second:
        assert first.execute(text("SELECT 1")).scalar_one() == second.execute(text("SELECT 1")).scalar_one() == 1
    assert store.fetches[fetched:] == [False]


def test_a_second_rejection_is_an_error_without_more_fetches(lambda_settings, monkeypatch):
    store = FakeSecretStore(secret("old-password"), secret("still-wrong"))
    monkeypatch.setattr("service.core.secrets.database_credentials", store)

    with pytest.raises(OperationalError, match="password authentication failed"):
        get_engine(lambda_settings).connect()
    assert store.fetches.count(True) == 1


def test_other_connection_failures_do_not_refetch(s3_endpoint, monkeypatch):
    store = FakeSecretStore(secret("any"))
    monkeypatch.setattr("service.core.secrets.database_credentials", store)
    settings = make_settings(
        "sqlite://", s3_endpoint, runtime="lambda", database_secret_arn=ARN, database_host="127.0.0.1", database_port=1
    )
    try:
        with pytest.raises(OperationalError) as failure:
            get_engine(settings).connect()
        assert not is_authentication_failure(failure.value.orig)
        assert True not in store.fetches
    finally:
        reset_engine(settings)
