"""Single (presigned POST) uploads, from create to download."""

import base64
import json
from datetime import UTC, datetime
from urllib.parse import unquote

import httpx

from tests.api.uploading import complete, create, payload, post_form, sha256_b64, upload_single


def test_single_upload_end_to_end_returns_the_same_bytes(client, alice):
    data = payload(200_000)
    created = upload_single(client, alice, data, filename="Interview été 1.wav", title="Interview")
    rid = created["recording"]["id"]
    assert created["recording"]["status"] == "pending"

    done = complete(client, alice, rid)
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "available"
    assert done.json()["completed_at"] is not None

    link = client.get(f"/v1/recordings/{rid}/download", headers=alice.headers)
    assert link.status_code == 200
    downloaded = httpx.get(link.json()["url"])
    assert downloaded.status_code == 200
    assert downloaded.content == data
    disposition = downloaded.headers["content-disposition"]
    assert disposition.startswith("attachment;")
    assert "filename*=UTF-8''" in disposition
    assert unquote(disposition.split("filename*=UTF-8''")[1]) == "Interview été 1.wav"


def test_download_redirect_answers_307_with_location(client, alice):
    data = payload(1000)
    rid = upload_single(client, alice, data)["recording"]["id"]
    assert complete(client, alice, rid).status_code == 200
    response = client.get(f"/v1/recordings/{rid}/download?redirect=true", headers=alice.headers, follow_redirects=False)
    assert response.status_code == 307
    assert httpx.get(response.headers["location"]).content == data


def test_download_of_pending_recording_is_conflict(client, alice):
    rid = create(client, alice, size=10)["recording"]["id"]
    response = client.get(f"/v1/recordings/{rid}/download", headers=alice.headers)
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"


def test_post_policy_pins_key_length_type_and_expiry(client, alice, settings):
    data = payload(4321)
    checksum = sha256_b64(data)
    created = create(client, alice, size=len(data), content_type="video/mp4", checksum_sha256=checksum)
    fields = created["upload"]["fields"]
    policy = json.loads(base64.b64decode(fields["policy"]))
    conditions = policy["conditions"]
    key = created["recording"]["key"]

    assert fields["key"] == key
    assert key == f"alice/{created['recording']['id']}"
    assert {"key": key} in conditions
    assert {"bucket": settings.s3_bucket} in conditions
    assert ["content-length-range", 4321, 4321] in conditions
    assert {"Content-Type": "video/mp4"} in conditions
    assert {"x-amz-checksum-sha256": checksum} in conditions
    expiration = datetime.fromisoformat(policy["expiration"].replace("Z", "+00:00"))
    remaining = (expiration - datetime.now(UTC)).total_seconds()
    assert 0 < remaining <= settings.presign_expires_seconds


def test_key_never_comes_from_the_filename(client, alice):
    created = create(client, alice, size=10, filename="..%2F..%2Fetc passwd.wav")
    assert created["recording"]["key"] == f"alice/{created['recording']['id']}"
    assert "passwd" not in created["upload"]["fields"]["key"]


def test_declared_checksum_is_verified(client, alice, s3, settings):
    data = payload(5000)
    good = upload_single(client, alice, data, checksum_sha256=sha256_b64(data))
    assert complete(client, alice, good["recording"]["id"]).json()["status"] == "available"

    other = payload(5000)
    bad = create(client, alice, size=len(data), checksum_sha256=sha256_b64(data))
    post_form(bad["upload"], other)
    response = complete(client, alice, bad["recording"]["id"])
    assert response.status_code == 409
    assert response.json()["type"] == "/problems/verification-failed"
    assert "checksum" in response.json()["detail"]
    versions = s3.list_object_versions(Bucket=settings.s3_bucket, Prefix=bad["recording"]["key"])
    assert not versions.get("Versions")


def test_wrong_size_fails_and_removes_the_object(client, alice, s3, settings):
    created = create(client, alice, size=1000)
    post_form(created["upload"], payload(999))
    response = complete(client, alice, created["recording"]["id"])
    assert response.status_code == 409
    assert "999" in response.json()["detail"]
    recording = client.get(f"/v1/recordings/{created['recording']['id']}", headers=alice.headers).json()
    assert recording["status"] == "failed"
    assert recording["failure_reason"]
    assert not s3.list_object_versions(Bucket=settings.s3_bucket, Prefix=created["recording"]["key"]).get("Versions")


def test_wrong_content_type_fails_and_removes_the_object(client, alice, s3, settings):
    created = create(client, alice, size=100, content_type="audio/wav")
    s3.put_object(
        Bucket=settings.s3_bucket, Key=created["recording"]["key"], Body=payload(100), ContentType="text/html"
    )
    response = complete(client, alice, created["recording"]["id"])
    assert response.status_code == 409
    assert "content type" in response.json()["detail"]
    assert not s3.list_object_versions(Bucket=settings.s3_bucket, Prefix=created["recording"]["key"]).get("Versions")


def test_missing_object_fails(client, alice):
    created = create(client, alice, size=100)
    response = complete(client, alice, created["recording"]["id"])
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert client.get(f"/v1/recordings/{created['recording']['id']}", headers=alice.headers).json()["status"] == (
        "failed"
    )
    # A failed recording stays failed: completing again is a conflict, not a second transition.
    assert complete(client, alice, created["recording"]["id"]).status_code == 409


def test_complete_is_idempotent(client, alice):
    data = payload(300)
    rid = upload_single(client, alice, data)["recording"]["id"]
    first = complete(client, alice, rid)
    second = complete(client, alice, rid)
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
