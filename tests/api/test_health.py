"""Liveness and readiness, including a database that is down."""

import time

from fastapi.testclient import TestClient

from service.api.app import create_app
from tests.conftest import make_settings


def test_liveness_needs_nothing(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_ready_when_database_and_bucket_answer(client):
    response = client.get("/health/ready")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "bucket": "ok"}


def test_not_ready_when_the_database_is_down(s3_endpoint, settings):
    down = make_settings("postgresql://postgres@127.0.0.1:1/none", s3_endpoint, s3_bucket=settings.s3_bucket)
    with TestClient(create_app(down), raise_server_exceptions=False) as client:
        started = time.monotonic()
        response = client.get("/health/ready")
        assert time.monotonic() - started < 5
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["retry-after"]
        assert response.json()["checks"]["database"] != "ok"
        assert response.json()["checks"]["bucket"] == "ok"
        assert "database" in response.json()["detail"]

        api = client.get("/v1/recordings", headers={"Authorization": "Bearer rk_abc_def"})
        assert api.status_code == 503
        assert api.headers["content-type"] == "application/problem+json"
        assert api.headers["retry-after"]
        assert "Traceback" not in api.text


def test_not_ready_when_the_bucket_is_missing(migrated, s3_endpoint):
    missing = make_settings(migrated, s3_endpoint, s3_bucket="no-such-bucket-here")
    with TestClient(create_app(missing)) as client:
        response = client.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["checks"]["bucket"] != "ok"
    assert response.json()["checks"]["database"] == "ok"
