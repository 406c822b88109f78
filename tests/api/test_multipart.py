"""Multipart uploads: plan, part URLs, resume, complete, verification."""

import httpx
import pytest

from tests.api.uploading import MiB, complete, create, payload, put_parts

SIZE = 11 * MiB  # three parts of 5, 5 and 1 MiB with the test part size


@pytest.fixture
def big():
    return payload(SIZE)


def test_multipart_upload_with_three_parts_end_to_end(client, alice, big):
    created = create(client, alice, size=SIZE, content_type="video/mp4", filename="talk.mp4")
    upload, recording = created["upload"], created["recording"]
    assert upload["method"] == "MULTIPART"
    assert upload["part_size"] == 5 * MiB
    assert upload["part_count"] == 3
    assert upload["upload_id"]

    etags = put_parts(client, alice, recording, big, [1, 2, 3])
    parts = [{"part_number": n, "etag": etag} for n, etag in etags.items()]
    done = complete(client, alice, recording["id"], parts)
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "available"

    link = client.get(f"/v1/recordings/{recording['id']}/download", headers=alice.headers).json()
    assert httpx.get(link["url"]).content == big


def test_interrupted_upload_resumes_from_uploaded_parts(client, alice, big):
    created = create(client, alice, size=SIZE)
    recording = created["recording"]
    put_parts(client, alice, recording, big, [1, 3])

    uploaded = client.get(f"/v1/recordings/{recording['id']}/upload/parts/uploaded", headers=alice.headers)
    assert uploaded.status_code == 200
    listed = uploaded.json()["parts"]
    assert [p["part_number"] for p in listed] == [1, 3]
    assert [p["size"] for p in listed] == [5 * MiB, 1 * MiB]

    early = complete(client, alice, recording["id"])
    assert early.status_code == 409
    assert early.json()["type"] == "/problems/parts-missing"
    assert early.json()["missing_parts"] == [2]
    # Still pending: the client can finish what it started.
    assert client.get(f"/v1/recordings/{recording['id']}", headers=alice.headers).json()["status"] == "pending"

    missing = sorted({1, 2, 3} - {p["part_number"] for p in listed})
    put_parts(client, alice, recording, big, missing)
    done = complete(client, alice, recording["id"])  # no body: the server lists the parts
    assert done.status_code == 200, done.text
    link = client.get(f"/v1/recordings/{recording['id']}/download", headers=alice.headers).json()
    assert httpx.get(link["url"]).content == big


def test_wrong_total_size_fails_and_leaves_nothing(client, alice, s3, settings, big):
    created = create(client, alice, size=SIZE)
    recording = created["recording"]
    short = big[: SIZE - 100]
    put_parts(client, alice, recording, short, [1, 2, 3])
    response = complete(client, alice, recording["id"])
    assert response.status_code == 409
    assert "differs from the declared" in response.json()["detail"]
    assert client.get(f"/v1/recordings/{recording['id']}", headers=alice.headers).json()["status"] == "failed"
    assert not s3.list_object_versions(Bucket=settings.s3_bucket, Prefix=recording["key"]).get("Versions")
    assert not s3.list_multipart_uploads(Bucket=settings.s3_bucket).get("Uploads")


def test_complete_with_wrong_etag_is_rejected_and_stays_pending(client, alice, big):
    recording = create(client, alice, size=SIZE)["recording"]
    etags = put_parts(client, alice, recording, big, [1, 2, 3])
    parts = [{"part_number": n, "etag": etag} for n, etag in etags.items()]
    parts[1]["etag"] = "0" * 32
    response = complete(client, alice, recording["id"], parts)
    assert response.status_code == 409
    assert response.json()["type"] == "/problems/invalid-parts"
    assert client.get(f"/v1/recordings/{recording['id']}", headers=alice.headers).json()["status"] == "pending"


def test_part_numbers_are_bounded(client, alice):
    recording = create(client, alice, size=SIZE)["recording"]
    rid = recording["id"]
    # Malformed (the schema's pattern refuses them): 422.
    for bad in ("0", "abc", "1,,2", "10001", ",".join(str(n) for n in range(1, 103))):
        response = client.get(f"/v1/recordings/{rid}/upload/parts", params={"part_numbers": bad}, headers=alice.headers)
        assert response.status_code == 422, bad
        assert response.headers["content-type"] == "application/problem+json"
    # Well formed, but beyond this upload's three parts: 409.
    for beyond in ("4", "1,2,99"):
        response = client.get(
            f"/v1/recordings/{rid}/upload/parts", params={"part_numbers": beyond}, headers=alice.headers
        )
        assert response.status_code == 409, beyond
        assert response.json()["type"] == "/problems/invalid-part-number"


def test_part_urls_for_a_single_upload_are_a_conflict(client, alice):
    rid = create(client, alice, size=100)["recording"]["id"]
    response = client.get(f"/v1/recordings/{rid}/upload/parts?part_numbers=1", headers=alice.headers)
    assert response.status_code == 409


def test_part_plan_stays_within_s3_limits(client, alice, settings):
    size = 5 * 1024 * MiB  # 5 GiB, the default maximum
    upload = create(client, alice, size=size)["upload"]
    assert upload["part_count"] <= 10_000
    assert upload["part_size"] >= 5 * MiB
    assert upload["part_size"] * upload["part_count"] >= size
    assert upload["part_size"] * (upload["part_count"] - 1) < size


def test_multipart_upload_refuses_a_checksum(client, alice):
    response = client.post(
        "/v1/recordings",
        json={"filename": "a.wav", "content_type": "audio/wav", "size_bytes": SIZE, "checksum_sha256": "A" * 43 + "="},
        headers=alice.headers,
    )
    assert response.status_code == 422
    # The schema states the rule too (a "not" on size above the threshold with a checksum).
    assert response.json()["type"] == "/problems/validation-error"
    assert "checksum_sha256" in response.json()["detail"]
