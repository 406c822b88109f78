"""S3 unreachable or hanging: bounded time (botocore timeouts and retries), 503 problem+json, and
no row that claims an object which does not exist."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from service.core.db import session_scope
from service.recordings.models import recordings
from tests.api.uploading import MiB, payload, post_form
from tests.reliability.conftest import client_for

SINGLE = {"filename": "take.wav", "content_type": "audio/wav", "size_bytes": 10}
MULTIPART = {**SINGLE, "size_bytes": 11 * MiB}
# connect 0.5 s / read 1 s, 2 attempts: measured 2-5 s per request here, whatever S3 does.
BOUND_SECONDS = 8.0


def _rows(settings) -> list:
    with session_scope(settings) as session:
        return list(session.execute(select(recordings)))


def _assert_storage_unavailable(response, started: float) -> float:
    elapsed = time.monotonic() - started
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["retry-after"]) > 0
    assert response.json()["type"] == "/problems/storage-unavailable"
    assert elapsed < BOUND_SECONDS, f"took {elapsed:.2f}s"
    return elapsed


def _break(proxy, how: str) -> None:
    proxy.stop()
    if how == "hanging":
        proxy.mode = "blackhole"
        proxy.start()


@pytest.mark.parametrize("how", ["unreachable", "hanging"])
def test_create_multipart_with_s3_down_leaves_no_row(s3_fault_settings, s3_proxy, settings, alice_key, how):
    with client_for(s3_fault_settings) as api:
        _break(s3_proxy, how)
        started = time.monotonic()
        response = api.post("/v1/recordings", json=MULTIPART, headers=alice_key.headers)
        _assert_storage_unavailable(response, started)
    assert _rows(settings) == []


@pytest.mark.parametrize("how", ["unreachable", "hanging"])
def test_complete_with_s3_down_keeps_the_upload_pending_then_succeeds(
    s3_fault_settings, s3_proxy, settings, alice_key, how
):
    data = payload(10)
    with client_for(s3_fault_settings) as api:
        created = api.post("/v1/recordings", json=SINGLE, headers=alice_key.headers).json()
        rid = created["recording"]["id"]
        # The bytes go to S3 directly (not through the broken path the API uses).
        upload = {**created["upload"], "url": created["upload"]["url"].replace(s3_proxy.address, _moto(settings))}
        post_form(upload, data)

        _break(s3_proxy, how)
        started = time.monotonic()
        _assert_storage_unavailable(api.post(f"/v1/recordings/{rid}/complete", headers=alice_key.headers), started)
        # Not "failed": an unanswered HeadObject proves nothing about the upload.
        assert [r.status for r in _rows(settings)] == ["pending"]

        s3_proxy.stop()
        s3_proxy.mode = "forward"
        s3_proxy.start()
        done = api.post(f"/v1/recordings/{rid}/complete", headers=alice_key.headers)
        assert done.status_code == 200, done.text
        assert done.json()["status"] == "available"


def _moto(settings) -> str:
    return settings.s3_endpoint_url.removeprefix("http://")


def test_delete_with_s3_down_keeps_the_recording(s3_fault_settings, s3_proxy, settings, alice_key, s3):
    with client_for(s3_fault_settings) as api:
        created = api.post("/v1/recordings", json=SINGLE, headers=alice_key.headers).json()
        rid = created["recording"]["id"]
        upload = {**created["upload"], "url": created["upload"]["url"].replace(s3_proxy.address, _moto(settings))}
        post_form(upload, payload(10))
        assert api.post(f"/v1/recordings/{rid}/complete", headers=alice_key.headers).status_code == 200

        _break(s3_proxy, "unreachable")
        started = time.monotonic()
        _assert_storage_unavailable(api.delete(f"/v1/recordings/{rid}", headers=alice_key.headers), started)
    (row,) = _rows(settings)
    assert row.status == "available"
    assert s3.head_object(Bucket=settings.s3_bucket, Key=row.s3_key)["ContentLength"] == 10


@pytest.mark.parametrize("how", ["unreachable", "hanging"])
def test_readiness_names_the_bucket_and_stays_bounded(s3_fault_settings, s3_proxy, how):
    with client_for(s3_fault_settings) as api:
        _break(s3_proxy, how)
        started = time.monotonic()
        ready = api.get("/health/ready")
        elapsed = time.monotonic() - started
    assert ready.status_code == 503
    assert ready.headers["retry-after"]
    assert ready.json()["checks"]["bucket"] != "ok"
    assert ready.json()["checks"]["database"] == "ok"
    # Bounded by the S3 timeouts (2 attempts of 1 s), not by the 10 s defaults or a hang; the slack
    # covers a loaded machine.
    assert elapsed < 5.0, f"readiness took {elapsed:.2f}s"


def test_no_server_errors_while_s3_is_down(s3_fault_settings, s3_proxy, alice_key):
    """Every S3-touching route answers 503 (or a normal answer that needs no S3), never 500."""
    with client_for(s3_fault_settings) as api:
        multipart = api.post("/v1/recordings", json=MULTIPART, headers=alice_key.headers).json()["recording"]
        _break(s3_proxy, "unreachable")
        mid = multipart["id"]
        calls = [
            ("GET", f"/v1/recordings/{mid}/upload/parts/uploaded", None),
            ("POST", f"/v1/recordings/{mid}/complete", None),
            ("DELETE", f"/v1/recordings/{mid}", None),
            ("POST", "/v1/recordings", MULTIPART),
            ("GET", "/v1/recordings", None),
        ]
        for method, path, body in calls:
            response = api.request(method, path, json=body, headers=alice_key.headers)
            assert response.status_code in (200, 503), (method, path, response.status_code, response.text)
        assert api.get(f"/v1/recordings/{mid}", headers=alice_key.headers).json()["status"] == "pending"
