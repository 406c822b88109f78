"""Explicit bad-input and mass-assignment cases not covered in tests/api, for every upload kind."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.api.uploading import MiB, create

VALID = {"filename": "a.wav", "content_type": "audio/wav", "size_bytes": 10}


@pytest.mark.parametrize(
    "field",
    [
        {"status": "available"},
        {"owner": "bob"},
        {"key": "bob/x"},
        {"s3_key": "x"},
        {"size_bytes": 1},
        {"id": "00000000-0000-4000-8000-000000000000"},
        {"upload_id": "x"},
        {"completed_at": "2020-01-01T00:00:00Z"},
    ],
)
def test_patch_cannot_set_server_owned_fields(api, alice, field):
    recording = create(api, alice, size=10)["recording"]
    response = api.patch(f"/v1/recordings/{recording['id']}", json=field, headers=alice.headers)
    assert response.status_code == 422, response.text
    assert api.get(f"/v1/recordings/{recording['id']}", headers=alice.headers).json() == recording


def test_uppy_create_ignores_server_owned_fields(api, alice):
    response = api.post(
        "/v1/s3/multipart",
        json={
            "filename": "b.wav",
            "type": "audio/wav",
            "key": "bob/x",
            "owner": "bob",
            "status": "available",
            "metadata": {"size": 11 * MiB, "status": "available", "owner": "bob"},
        },
        headers=alice.headers,
    )
    assert response.status_code == 200, response.text
    key = response.json()["key"]
    assert key.startswith("alice/")
    (item,) = api.get("/v1/recordings", headers=alice.headers).json()["items"]
    assert (item["key"], item["status"], item["size_bytes"]) == (key, "pending", 11 * MiB)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        _b64(b"not json"),
        _b64(b"[1, 2]"),
        _b64(b'["2024-01-01T00:00:00+00:00"]'),
        _b64(b'{"a": 1, "b": 2}'),
        _b64(b'["2024-01-01T00:00:00+00:00", "not-a-uuid"]'),
        _b64(b'["not a date", "00000000-0000-4000-8000-000000000000"]'),
        _b64(b"\xff\xfe\xfd"),
        _b64(b'["2024-01-01", 5]'),  # a date and a number: once a 500
        "!!!",
        "a",
        "",
        "123.",
        "123456789012345678.00000000000000000000000000000000",  # beyond year 9999
        "1.0000000000000000000000000000000G",
        "1.00000000-0000-4000-8000-000000000000",
    ],
)
def test_tampered_cursors_are_rejected(api, alice, cursor):
    response = api.get("/v1/recordings", params={"cursor": cursor}, headers=alice.headers)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["loc"] == ["query", "cursor"]
    assert "next_cursor" in response.json()["detail"]


def test_a_forged_cursor_never_reaches_another_tenants_rows(api, alice, bob):
    create(api, alice, size=10)
    forged = "99999999999999999.ffffffffffff4fffbfffffffffffffff"
    page = api.get("/v1/recordings", params={"cursor": forged}, headers=bob.headers)
    assert page.status_code == 200
    assert page.json()["items"] == []


@pytest.fixture
def uppy_upload(api, alice):
    created = api.post(
        "/v1/s3/multipart",
        json={"filename": "b.wav", "type": "audio/wav", "metadata": {"size": 11 * MiB}},
        headers=alice.headers,
    )
    assert created.status_code == 200, created.text
    return created.json()


@pytest.mark.parametrize("number", ["0", "-1", "10001", "99999999999999999999", "abc"])
def test_uppy_part_numbers_out_of_range(api, alice, uppy_upload, number):
    upload_id, key = uppy_upload["uploadId"], uppy_upload["key"]
    single = api.get(f"/v1/s3/multipart/{upload_id}/{number}", params={"key": key}, headers=alice.headers)
    batch = api.get(
        f"/v1/s3/multipart/{upload_id}/batch", params={"key": key, "partNumbers": f"1,{number}"}, headers=alice.headers
    )
    # Malformed numbers are 422; a well-formed one beyond this upload's three parts is 409.
    expected = 409 if number == "4" else 422
    # Only digits route to the part URL (".../complete" is another resource): others are 404.
    assert single.status_code == (expected if number.isdigit() else 404), single.text
    assert batch.status_code == expected, batch.text
    for response in (single, batch):
        assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("filename", ["../x.wav", "a\\b.wav", "bell\x07.wav", "x" * 10_000])
def test_uppy_single_upload_rejects_bad_filenames(api, alice, filename):
    params = {"filename": filename, "type": "audio/wav", "metadata[size]": "10"}
    response = api.get("/v1/s3/params", params=params, headers=alice.headers)
    assert response.status_code == 422, response.text


def test_non_utf8_query_bytes_never_reach_storage_raw(api, alice):
    """Starlette decodes query strings with replacement: invalid bytes become U+FFFD, never a 500
    and never undecodable text in the database."""
    response = api.get("/v1/s3/params?filename=%FF%FE.wav&type=audio/wav&metadata[size]=10", headers=alice.headers)
    assert response.status_code in (200, 400, 422), response.text
    if response.status_code == 200:
        (item,) = api.get("/v1/recordings", headers=alice.headers).json()["items"]
        assert item["filename"] == "\ufffd\ufffd.wav"


def test_uppy_presigned_post_policy_is_pinned(api, alice, settings):
    response = api.get(
        "/v1/s3/params",
        params={"filename": "a.wav", "type": "audio/wav", "metadata[size]": "4321"},
        headers=alice.headers,
    )
    assert response.status_code == 200, response.text
    fields = response.json()["fields"]
    policy = json.loads(base64.b64decode(fields["policy"]))
    key = fields["key"]
    assert key.startswith("alice/")
    assert {"key": key} in policy["conditions"]
    assert {"bucket": settings.s3_bucket} in policy["conditions"]
    assert ["content-length-range", 4321, 4321] in policy["conditions"]
    assert {"Content-Type": "audio/wav"} in policy["conditions"]
    expiration = datetime.fromisoformat(policy["expiration"].replace("Z", "+00:00"))
    assert 0 < (expiration - datetime.now(UTC)).total_seconds() <= settings.presign_expires_seconds


def test_part_urls_are_pinned_to_key_upload_and_expiry(api, alice, settings):
    created = create(api, alice, size=11 * MiB)
    recording, upload_id = created["recording"], created["upload"]["upload_id"]
    urls = api.get(
        f"/v1/recordings/{recording['id']}/upload/parts", params={"part_numbers": "1,3"}, headers=alice.headers
    )
    assert urls.status_code == 200
    for number, url in urls.json()["urls"].items():
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        assert parts.path.endswith(f"/{recording['key']}")
        assert query["uploadId"] == [upload_id]
        assert query["partNumber"] == [number]
        assert 0 < int(query["X-Amz-Expires"][0]) <= settings.presign_expires_seconds


def test_nul_characters_are_a_422_not_a_500(api, alice, uppy_upload):
    """Found by schemathesis: a NUL in a query value reached psycopg2 and became a 500."""
    response = api.get(
        f"/v1/s3/multipart/{uppy_upload['uploadId']}", params={"key": "alice/\x00"}, headers=alice.headers
    )
    assert response.status_code == 422, response.text
    # The schema states it too, so the request is refused before it reaches the database.
    assert response.json()["type"] == "/problems/validation-error"
    assert response.json()["errors"][0]["loc"] == ["query", "key"]
