"""Shared fixtures: a real PostgreSQL database per run, moto's S3 server on loopback.

TEST_DATABASE_URL points at a server where the run may create a database and roles, as a
superuser (default: the local PostgreSQL as user postgres; ``make test`` points it at the
PostgreSQL 18 cluster that ``tests/pg_server.py`` runs). The run creates
``recordings_test_<random>``, migrates it as its owner, and the app connects as a role of its own,
``recordings_app_<random>``, with the rights the migration grants it (rows, no DDL), as in AWS.
Both are dropped at the end.
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text

# Dummy credentials for the S3 test server; real ones must never be used by the tests.
os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_SESSION_TOKEN="testing",
    AWS_DEFAULT_REGION="us-east-1",
)
for leaked in ("AWS_PROFILE", "DATABASE_URL", "DATABASE_SECRET_ARN", "S3_BUCKET", "S3_ENDPOINT_URL"):
    os.environ.pop(leaked, None)

from service.core.settings import Settings  # noqa: E402

UNIT_TESTS = Path(__file__).resolve().parent / "unit"
BASE_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
MiB = 1024 * 1024


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """``-m "not db"`` selects tests/unit only: the other directories are not even imported
    (importing the CDK and browser suites alone takes seconds)."""
    if config.getoption("markexpr", "").replace(" ", "") != "notdb":
        return None
    tests = UNIT_TESTS.parent
    inside_tests = collection_path.is_relative_to(tests) and collection_path != tests
    if inside_tests and not collection_path.is_relative_to(UNIT_TESTS):
        return True
    return None


@pytest.hookimpl(tryfirst=True)  # before ``-m`` selects on the marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test outside tests/unit needs the test environment: mark it ``db``. The unit tests
    are pure (no database, servers, browser or synth), so ``pytest -m "not db"`` runs in seconds;
    a unit test that asks for the run's database is a collection error."""
    impure = []
    for item in items:
        if not item.path.is_relative_to(UNIT_TESTS):
            item.add_marker(pytest.mark.db)
        elif "_run_database" in getattr(item, "fixturenames", ()):
            impure.append(item.nodeid)
    if impure:
        raise pytest.UsageError(f"tests/unit must not use the database: {', '.join(impure)}")


@pytest.fixture(scope="session")
def _run_database() -> Iterator[tuple[str, str]]:
    """(owner URL, application URL) of the run's database; the database is dropped before the
    application role, which may only go once nothing grants it anything."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    from service.core.db import dispose_engines, with_driver
    from tests.pg_server import scratch_database

    role = f"recordings_app_{uuid.uuid4().hex[:8]}"
    try:
        with scratch_database(BASE_DATABASE_URL, "recordings_test") as owner_url:
            # A password even where the server trusts loopback (CI's server may ask for one).
            app_url = make_url(owner_url).set(username=role, password=secrets.token_urlsafe(16))
            try:
                yield owner_url, app_url.render_as_string(hide_password=False)
            finally:
                dispose_engines()
    finally:
        server = create_engine(with_driver(make_url(BASE_DATABASE_URL)), isolation_level="AUTOCOMMIT")
        try:
            with server.connect() as connection:
                connection.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
        finally:
            server.dispose()


@pytest.fixture(scope="session")
def owner_database_url(_run_database: tuple[str, str]) -> str:
    """The run's database, as its owner (the migration's credentials)."""
    return _run_database[0]


@pytest.fixture(scope="session")
def database_url(_run_database: tuple[str, str]) -> str:
    """The run's database, as the application role (created by the migration)."""
    return _run_database[1]


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    from service.devrun import embedded_s3

    with embedded_s3() as endpoint:
        yield endpoint


def make_settings(database_url: str, s3_endpoint: str, **overrides) -> Settings:
    values = {
        "environment": "test",
        "database_url": database_url,
        "s3_endpoint_url": s3_endpoint,
        "s3_bucket": f"test-{uuid.uuid4().hex[:12]}",
        "multipart_threshold_bytes": 5 * MiB,
        "multipart_part_bytes": 5 * MiB,
        "max_upload_bytes": 5 * 1024 * MiB,
        "db_pool_size": 5,
        "db_max_overflow": 25,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session")
def migrated(database_url: str, owner_database_url: str, s3_endpoint: str) -> str:
    """Migrate as the owner; the migration creates the app role. Returns the app's URL."""
    from service.core import migrate

    migrate.upgrade(make_settings(database_url, s3_endpoint, database_migration_url=owner_database_url))
    return database_url


@pytest.fixture(scope="session")
def owner_engine(migrated: str, owner_database_url: str):
    """An engine with the owner's rights, for test set-up the app may not do (TRUNCATE, DDL)."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    from service.core.db import with_driver

    engine = create_engine(with_driver(make_url(owner_database_url)))
    yield engine
    engine.dispose()


def create_bucket(settings: Settings) -> None:
    from service.devrun import prepare_bucket

    prepare_bucket(settings, ["http://127.0.0.1:8000"])


@pytest.fixture
def settings(migrated: str, s3_endpoint: str, owner_engine) -> Iterator[Settings]:
    settings = make_settings(migrated, s3_endpoint)
    create_bucket(settings)
    yield settings
    with owner_engine.begin() as connection:
        connection.execute(text("TRUNCATE recordings, api_keys"))


@pytest.fixture
def s3(settings: Settings):
    from service.core.storage import s3_client

    return s3_client(settings)


@pytest.fixture
def app(settings: Settings):
    from service.api.app import create_app

    return create_app(settings)


@pytest.fixture(params=["asgi", "lambda"])
def client(request, app) -> Iterator:
    """The API suite runs twice: in-process ASGI, and through the Lambda handler (Mangum) with
    each request turned into an API Gateway HTTP API event (tests/transports.py)."""
    if request.param == "lambda":
        from tests.transports import lambda_client

        with lambda_client(app) as lambda_test_client:
            yield lambda_test_client
        return
    from fastapi.testclient import TestClient

    with TestClient(app, base_url="http://testserver") as test_client:
        yield test_client


@dataclass(frozen=True)
class Tenant:
    name: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def new_tenant(settings: Settings, name: str) -> Tenant:
    from service.auth.api_keys import create_api_key
    from service.core.db import session_scope

    with session_scope(settings) as session:
        return Tenant(name=name, token=create_api_key(session, owner=name, name="test").token)


@pytest.fixture
def alice(settings: Settings) -> Tenant:
    return new_tenant(settings, "alice")


@pytest.fixture
def bob(settings: Settings) -> Tenant:
    return new_tenant(settings, "bob")


@pytest.fixture(scope="session")
def pooler(migrated: str):
    """PgBouncer in transaction-pooling mode in front of the run's database: the stand-in for
    RDS Proxy (tests/pg_server.py). Started once per run, stopped at its end."""
    from sqlalchemy.engine import make_url

    from tests.pg_server import pgbouncer

    url = make_url(migrated)
    with pgbouncer(url.host or "127.0.0.1", url.port or 5432, pooler_users(migrated)) as bouncer:
        yield bouncer


def pooler_users(app_url: str) -> dict[str, str]:
    """PgBouncer's user list: the app role and the server's superuser, with their passwords (the
    pooler logs in to the server as them)."""
    from sqlalchemy.engine import make_url

    app, base = make_url(app_url), make_url(BASE_DATABASE_URL)
    return {app.username: app.password or "", base.username: base.password or ""}


def through_pooler(settings: Settings, bouncer) -> Settings:
    """``settings`` with the database reached through ``bouncer``."""
    from pydantic import SecretStr

    url = bouncer.url_for(settings.database_url.get_secret_value())
    return settings.model_copy(update={"database_url": SecretStr(url)})
