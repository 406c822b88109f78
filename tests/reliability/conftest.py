"""Fault fixtures: PostgreSQL and S3 reached through loopback TCP proxies a test can break."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from service.api.app import create_app
from service.core.settings import Settings
from service.observability.metrics import domain as domain_metrics
from tests.conftest import make_settings, new_tenant
from tests.reliability.proxy import TcpProxy


@pytest.fixture
def db_proxy(migrated: str) -> Iterator[TcpProxy]:
    url = make_url(migrated)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def s3_proxy(s3_endpoint: str) -> Iterator[TcpProxy]:
    parts = urlsplit(s3_endpoint)
    proxy = TcpProxy(parts.hostname, parts.port).start()
    yield proxy
    proxy.stop()


def _forget(settings: Settings) -> None:
    from service.core import storage
    from service.core.db import reset_engine

    reset_engine(settings)
    storage._clients.pop(storage._client_key(settings), None)


@pytest.fixture
def db_fault_settings(settings: Settings, db_proxy: TcpProxy) -> Iterator[Settings]:
    """The test's database and bucket, with the database reached through ``db_proxy``."""
    url = make_url(settings.database_url.get_secret_value()).set(host="127.0.0.1", port=db_proxy.port)
    faulty = make_settings(
        url.render_as_string(hide_password=False),
        settings.s3_endpoint_url,
        s3_bucket=settings.s3_bucket,
        db_pool_timeout_seconds=2,
    )
    yield faulty
    _forget(faulty)


@pytest.fixture
def s3_fault_settings(settings: Settings, s3_proxy: TcpProxy) -> Iterator[Settings]:
    """The test's database and bucket, with S3 reached through ``s3_proxy`` and tight timeouts."""
    faulty = make_settings(
        settings.database_url.get_secret_value(),
        f"http://{s3_proxy.address}",
        s3_bucket=settings.s3_bucket,
        s3_connect_timeout_seconds=0.5,
        s3_read_timeout_seconds=1.0,
        s3_max_attempts=2,
    )
    yield faulty
    _forget(faulty)


@pytest.fixture
def alice_key(settings: Settings):
    return new_tenant(settings, "alice")


def client_for(settings: Settings) -> TestClient:
    # Server errors become responses (as in production), never exceptions in the test.
    return TestClient(create_app(settings), base_url="http://testserver", raise_server_exceptions=False)


@pytest.fixture
def transitions(monkeypatch) -> Counter:
    recorded: Counter = Counter()
    real = domain_metrics.record_upload

    def counting(outcome: str) -> None:
        recorded.update([outcome])
        real(outcome)

    monkeypatch.setattr("service.observability.metrics.domain.record_upload", counting)
    return recorded
