"""Limits against resource exhaustion: per-tenant request rate and pending uploads (429 with
Retry-After, problem+json), and the page size cap."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from tests.conftest import make_settings

BODY = {"filename": "a.wav", "content_type": "audio/wav", "size_bytes": 10}


def _client(settings, **overrides) -> TestClient:
    limited = make_settings(
        settings.database_url.get_secret_value(), settings.s3_endpoint_url, s3_bucket=settings.s3_bucket, **overrides
    )
    return TestClient(create_app(limited), base_url="http://testserver", raise_server_exceptions=False)


def _assert_429(response) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["retry-after"]) >= 1


def test_rate_limit_is_per_tenant_and_answers_429(settings, alice, bob):
    with _client(settings, rate_limit_per_minute=60, rate_limit_burst=5) as api:
        statuses = [api.get("/v1/recordings", headers=alice.headers).status_code for _ in range(5)]
        assert statuses == [200] * 5
        limited = api.get("/v1/recordings", headers=alice.headers)
        _assert_429(limited)
        assert limited.json()["type"] == "/problems/too-many-requests"
        assert api.get("/v1/recordings", headers=bob.headers).status_code == 200  # bob has his own bucket
        assert api.get("/health").status_code == 200  # unauthenticated probes are not limited


def test_rate_limit_zero_turns_it_off(settings, alice):
    with _client(settings, rate_limit_per_minute=0) as api:
        assert {api.get("/v1/recordings", headers=alice.headers).status_code for _ in range(30)} == {200}


def test_pending_upload_cap_is_per_tenant(settings, alice, bob):
    with _client(settings, max_pending_uploads_per_tenant=3) as api:
        created = [api.post("/v1/recordings", json=BODY, headers=alice.headers) for _ in range(3)]
        assert [r.status_code for r in created] == [201] * 3
        refused = api.post("/v1/recordings", json=BODY, headers=alice.headers)
        _assert_429(refused)
        assert refused.json()["type"] == "/problems/too-many-pending-uploads"
        uppy = api.post(
            "/v1/s3/multipart",
            json={"filename": "b.wav", "type": "audio/wav", "metadata": {"size": 11 * 1024 * 1024}},
            headers=alice.headers,
        )
        _assert_429(uppy)
        assert api.post("/v1/recordings", json=BODY, headers=bob.headers).status_code == 201
        # Finishing with one (here: deleting it) frees a slot.
        rid = created[0].json()["recording"]["id"]
        assert api.delete(f"/v1/recordings/{rid}", headers=alice.headers).status_code == 204
        assert api.post("/v1/recordings", json=BODY, headers=alice.headers).status_code == 201
        listed = api.get("/v1/recordings", params={"status": "pending"}, headers=alice.headers).json()["items"]
        assert len(listed) == 3


@pytest.mark.parametrize(("limit", "status"), [(200, 200), (201, 422), (0, 422), (10**9, 422)])
def test_page_size_is_capped(api, alice, limit, status):
    response = api.get("/v1/recordings", params={"limit": limit}, headers=alice.headers)
    assert response.status_code == status, response.text


def test_failed_authentication_is_limited_per_client_address(settings, alice):
    configured = make_settings(
        settings.database_url.get_secret_value(),
        settings.s3_endpoint_url,
        s3_bucket=settings.s3_bucket,
        auth_failures_per_minute=3,
    )
    app = create_app(configured)
    wrong = {"Authorization": "Bearer rk_000000000000_not-the-secret"}
    with (
        TestClient(app, client=("203.0.113.7", 40000)) as guesser,
        TestClient(app, client=("198.51.100.9", 40000)) as neighbour,
    ):
        # Requests without credentials are not attempts: they never count.
        for _ in range(5):
            assert guesser.get("/v1/recordings").status_code == 401
        for _ in range(3):
            assert guesser.get("/v1/recordings", headers=wrong).status_code == 401
        blocked = guesser.get("/v1/recordings", headers=wrong)
        _assert_429(blocked)
        assert blocked.json()["type"] == "/problems/too-many-failed-authentications"
        # The address is refused before any credential is checked, right ones included ...
        _assert_429(guesser.get("/v1/recordings", headers=alice.headers))
        # ... while other addresses are not affected.
        assert neighbour.get("/v1/recordings", headers=alice.headers).status_code == 200
        assert neighbour.get("/v1/recordings", headers=wrong).status_code == 401
