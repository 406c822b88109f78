"""Logs at DEBUG during an authenticated flow (and through a database outage) never contain the
API key, its secret part or the database password."""

from __future__ import annotations

import logging
import secrets

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import make_url

from service.api.app import create_app
from service.core.db import reset_engine
from service.observability.logging import JsonFormatter
from tests.api.uploading import payload, post_form
from tests.conftest import make_settings, new_tenant
from tests.reliability.proxy import TcpProxy


@pytest.fixture
def password_settings(settings, owner_engine):
    """The test database reached as a role that has a password (sent even where trust applies)."""
    role, password = f"rec_log_{secrets.token_hex(4)}", secrets.token_urlsafe(24)
    admin = owner_engine
    with admin.begin() as connection:
        connection.execute(text(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'"))
        connection.execute(text(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}"))
    url = make_url(settings.database_url.get_secret_value()).set(username=role, password=password)
    proxy = TcpProxy(url.host, url.port or 5432).start()
    secret_settings = make_settings(
        url.set(port=proxy.port).render_as_string(hide_password=False),
        settings.s3_endpoint_url,
        s3_bucket=settings.s3_bucket,
        log_level="DEBUG",
    )
    yield secret_settings, password, proxy
    proxy.stop()
    reset_engine(secret_settings)
    with admin.begin() as connection:
        connection.execute(text(f"DROP OWNED BY {role}"))
        connection.execute(text(f"DROP ROLE {role}"))


def test_debug_logs_hold_no_token_and_no_database_password(password_settings, caplog):
    settings, password, proxy = password_settings
    tenant = new_tenant(settings, "alice")
    secret_part = tenant.token.split("_", 2)[2]
    caplog.set_level(logging.DEBUG)
    for name in ("", "service", "sqlalchemy", "sqlalchemy.engine", "sqlalchemy.pool", "botocore", "urllib3", "httpx"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        with TestClient(create_app(settings), raise_server_exceptions=False) as api:
            h = tenant.headers
            created = api.post(
                "/v1/recordings", json={"filename": "a.wav", "content_type": "audio/wav", "size_bytes": 5}, headers=h
            )
            assert created.status_code == 201
            post_form(created.json()["upload"], payload(5))
            rid = created.json()["recording"]["id"]
            assert api.post(f"/v1/recordings/{rid}/complete", headers=h).status_code == 200
            assert api.get("/v1/recordings", headers=h).status_code == 200
            assert api.get(f"/v1/recordings/{rid}/download", headers=h).status_code == 200
            assert api.post("/v1/auth/session", headers=h).status_code == 200
            assert api.get("/v1/recordings", headers={"Authorization": f"Bearer {tenant.token}x"}).status_code == 401
            proxy.stop()  # errors on the way out must not print the connection string either
            assert api.get("/v1/recordings", headers=h).status_code == 503
            assert api.get("/health/ready").status_code == 503
    finally:
        for name in ("sqlalchemy", "sqlalchemy.engine", "sqlalchemy.pool", "botocore", "urllib3", "httpx"):
            logging.getLogger(name).setLevel(logging.WARNING)
    formatter = JsonFormatter()
    logged = "\n".join(formatter.format(record) for record in caplog.records)
    assert len(caplog.records) > 20, "the flow should have logged at DEBUG"
    for needle, what in ((tenant.token, "API key"), (secret_part, "API key secret"), (password, "database password")):
        assert needle not in logged, f"the {what} appears in the logs"
