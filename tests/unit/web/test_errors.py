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
