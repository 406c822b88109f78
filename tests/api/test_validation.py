"""Bad input gets a clear problem+json answer and leaves nothing behind."""

import pytest
from sqlalchemy import func, select

from service.core.db import session_scope
from service.recordings.models import recordings

VALID = {"filename": "a.wav", "content_type": "audio/wav", "size_bytes": 100}


def _count(settings) -> int:
    with session_scope(settings) as session:
        return session.scalar(select(func.count()).select_from(recordings))


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"size_bytes": 0}, "size_bytes"),
        ({"size_bytes": -5}, "size_bytes"),
        ({"size_bytes": 5 * 1024**3 + 1}, "less than or equal to 5368709120"),
        ({"content_type": "text/html"}, "allowed here: audio/*"),
        ({"content_type": "audio"}, "content_type"),
        ({"content_type": "audio/wav; charset=x"}, "content_type"),
        ({"filename": "../../etc/passwd"}, "path separators"),
        ({"filename": "dir\\file.wav"}, "path separators"),
        ({"filename": "bell\x07.wav"}, "control"),
        ({"filename": "x" * 10_000}, "filename"),
        ({"filename": "x" * 300}, "at most 255"),
        ({"filename": "   "}, "blank"),
        ({"metadata": {"blob": "x" * 17_000}}, "metadata"),
        ({"metadata": ["not", "an", "object"]}, "metadata"),
        ({"checksum_sha256": "not base64 at all, not base64 at all, not b64"}, "checksum"),
        ({"status": "available"}, "status"),
        ({"owner": "bob"}, "owner"),
        ({"key": "bob/x"}, "key"),
    ],
)
def test_create_rejects_bad_input_and_stores_nothing(client, alice, settings, change, needle):
    response = client.post("/v1/recordings", json={**VALID, **change}, headers=alice.headers)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == 422
    assert body["type"].startswith("/problems/")
    assert needle in body["detail"], body
    assert _count(settings) == 0


def test_malformed_json_is_422_problem(client, alice):
    response = client.post(
        "/v1/recordings",
        content=b'{"filename": "a.wav", ',
        headers={**alice.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


def test_non_utf8_body_is_a_bad_request_problem(client, alice, settings):
    response = client.post(
        "/v1/recordings",
        content=b'{"filename": "\xff\xfe.wav", "content_type": "audio/wav", "size_bytes": 1}',
        headers={**alice.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert "pars" in response.json()["detail"]
    assert _count(settings) == 0


def test_oversized_body_is_413(client, alice, settings):
    body = b'{"filename": "a.wav", "metadata": {"x": "' + b"y" * settings.max_request_body_bytes + b'"}}'
    response = client.post(
        "/v1/recordings", content=body, headers={**alice.headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert _count(settings) == 0


def test_invalid_uuid_is_422(client, alice):
    response = client.get("/v1/recordings/not-a-uuid", headers=alice.headers)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


def test_unknown_route_and_method_are_problems(client, alice):
    missing = client.get("/v1/nothing-here", headers=alice.headers)
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    wrong_method = client.put("/v1/recordings", headers=alice.headers)
    assert wrong_method.status_code == 405
    assert wrong_method.headers["content-type"] == "application/problem+json"


def test_responses_carry_security_headers(client, alice):
    response = client.get("/v1/recordings", headers=alice.headers)
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"
