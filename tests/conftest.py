"""Shared fixtures: a real PostgreSQL database per run, moto's S3 server on loopback.

TEST_DATABASE_URL points at a server where the run may create a database (default: the local
PostgreSQL as user postgres). The run creates ``recordings_test_<random>`` and drops it at the end.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

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

from service.config import Settings  # noqa: E402

BASE_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
MiB = 1024 * 1024


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    from service.db import dispose_engines
    from service.devrun import scratch_database

    with scratch_database(BASE_DATABASE_URL, "recordings_test") as url:
        try:
            yield url
        finally:
            dispose_engines()


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
def migrated(database_url: str, s3_endpoint: str) -> str:
    from service import migrate

    migrate.upgrade(make_settings(database_url, s3_endpoint))
    return database_url


def create_bucket(settings: Settings) -> None:
    from service.devrun import prepare_bucket

    prepare_bucket(settings, ["http://127.0.0.1:8000"])


@pytest.fixture
def settings(migrated: str, s3_endpoint: str) -> Iterator[Settings]:
    settings = make_settings(migrated, s3_endpoint)
    create_bucket(settings)
    yield settings
    from service.db import get_engine

    with get_engine(settings).begin() as connection:
        connection.execute(text("TRUNCATE recordings, api_keys"))


@pytest.fixture
def s3(settings: Settings):
    from service.storage import s3_client

    return s3_client(settings)


@pytest.fixture
def app(settings: Settings):
    from service.main import create_app

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
    from service.db import session_scope

    with session_scope(settings) as session:
        return Tenant(name=name, token=create_api_key(session, owner=name, name="test").token)


@pytest.fixture
def alice(settings: Settings) -> Tenant:
    return new_tenant(settings, "alice")


@pytest.fixture
def bob(settings: Settings) -> Tenant:
    return new_tenant(settings, "bob")
