"""How the API answers S3 failures: a 503 with Retry-After for what a retry can fix, a generic
500 for S3 refusing the service (logged with the IAM action and counted for the alarm)."""

from __future__ import annotations

import logging

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from service.core.storage import StorageRejected

# The Prometheus listener counts what the storage layer signals (subscribed on import).
from service.observability.metrics import domain  # noqa: F401
from service.web.errors import install_error_handlers


def client_error(code: str, status: int, operation: str) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, operation
    )


def _rejected(operation: str) -> float:
    labels = {"operation": operation, "outcome": "rejected"}
    return REGISTRY.get_sample_value("recordings_storage_errors_total", labels) or 0.0


@pytest.fixture
def api():
    app = FastAPI()
    install_error_handlers(app)
    failures = {
        "denied": client_error("AccessDenied", 403, "ListObjectVersions"),
        "throttled": client_error("SlowDown", 503, "HeadObject"),
        "no-credentials": NoCredentialsError(),
        "unreachable": EndpointConnectionError(endpoint_url="https://s3"),
        "rejected": StorageRejected(),
    }

    @app.get("/fail/{how}")
    def fail(how: str):
        raise failures[how]

    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.parametrize(
    ("how", "status"),
    [("denied", 500), ("no-credentials", 500), ("rejected", 500), ("throttled", 503), ("unreachable", 503)],
)
def test_answers(api, how, status) -> None:
    response = api.get(f"/fail/{how}")
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    if status == 503:
        assert body["type"] == "/problems/storage-unavailable"
        assert int(response.headers["retry-after"]) > 0
    else:
        assert body["type"] == "/problems/internal-error"
        assert body["detail"] == "An internal error occurred."
        assert "retry-after" not in response.headers


def test_an_escaped_refusal_is_logged_and_counted(api, caplog) -> None:
    before = _rejected("ListObjectVersions")
    with caplog.at_level(logging.ERROR, logger="service.core.storage"):
        api.get("/fail/denied")
    assert "s3:ListBucketVersions" in caplog.records[-1].getMessage()
    assert _rejected("ListObjectVersions") == before + 1


def test_a_checkout_that_finds_every_connection_closed_is_503(tmp_path) -> None:
    """The pool's own exception when every connection it tries at checkout is closed (a database
    restarting or failing over) is the database being unavailable, not an internal error."""
    from sqlalchemy import create_engine, event, text
    from sqlalchemy.exc import DisconnectionError, InvalidRequestError

    engine = create_engine(f"sqlite:///{tmp_path / 'down.db'}")

    @event.listens_for(engine, "checkout")
    def _closed(*_args) -> None:
        raise DisconnectionError("the server closed the connection")

    app = FastAPI()
    install_error_handlers(app)

    @app.get("/read")
    def read():
        with engine.connect() as connection:
            return connection.execute(text("SELECT 1")).scalar()

    @app.get("/misuse")
    def misuse():
        raise InvalidRequestError("Object is already attached to session 1")

    api = TestClient(app, raise_server_exceptions=False)
    response = api.get("/read")
    assert response.status_code == 503
    assert response.json()["type"] == "/problems/database-unavailable"
    assert int(response.headers["retry-after"]) > 0
    # Any other InvalidRequestError is a bug: 500, without details.
    bug = api.get("/misuse")
    assert bug.status_code == 500
    assert bug.json()["detail"] == "An internal error occurred."
    engine.dispose()
