"""Companion-compatible S3 routes (what @uppy/aws-s3 calls with companionEndpoint)."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from tests.api.test_sessions import OWN_ORIGIN, sign_in
from tests.api.uploading import MiB, payload

SIZE = 11 * MiB  # three 5 MiB parts


def params(client, tenant, size: int | None = None, **extra):
    # What Uppy sends: the file's name and type, its meta as metadata[...] (no size unless declared).
    query = {"filename": "memo.wav", "type": "audio/wav", "metadata[name]": "memo.wav", "metadata[take]": "3"}
    if size is not None:
        query["metadata[size]"] = str(size)
    return client.get("/v1/s3/params", params={**query, **extra}, headers=tenant.headers)


def policy_range(fields: dict) -> list:
    conditions = json.loads(base64.b64decode(fields["policy"]))["conditions"]
    return next(c for c in conditions if isinstance(c, list) and c[0] == "content-length-range")


def start_multipart(client, tenant, size: int | None = None) -> dict:
    meta = {"name": "long.wav", "type": "audio/wav", "relativePath": None}
    if size is not None:
        meta["size"] = size
    body = {"filename": "long.wav", "type": "audio/wav", "metadata": meta}
    response = client.post("/v1/s3/multipart", json=body, headers=tenant.headers)
    assert response.status_code == 200, response.text
    return response.json()


def complete(client, tenant, upload: dict, parts: list[dict]):
    return client.post(
        f"/v1/s3/multipart/{upload['uploadId']}/complete",
        params={"key": upload["key"]},
        json={"parts": parts},
        headers=tenant.headers,
    )


def put_parts(client, tenant, upload: dict, data: bytes, numbers: list[int], chunk: int = 5 * MiB) -> list[dict]:
    parts = []
    for number in numbers:
        signed = client.get(
            f"/v1/s3/multipart/{upload['uploadId']}/{number}", params={"key": upload["key"]}, headers=tenant.headers
        )
        assert signed.status_code == 200, signed.text
        assert signed.json()["expires"] > 0
        chunk_bytes = data[(number - 1) * chunk : number * chunk]
        response = httpx.put(signed.json()["url"], content=chunk_bytes)
        assert response.status_code == 200
        parts.append({"PartNumber": number, "ETag": response.headers["ETag"]})
    return parts


def test_single_upload_without_a_size_takes_the_objects_size(client, alice, settings):
    data = payload(1234)
    signed = params(client, alice)
    assert signed.status_code == 200, signed.text
    body = signed.json()
    assert body["method"] == "POST"
    assert body["expires"] > 0
    assert body["url"].endswith("/")
    assert body["fields"]["key"].startswith("alice/")
    assert policy_range(body["fields"]) == ["content-length-range", 1, settings.max_upload_bytes]
    (pending,) = client.get("/v1/recordings", headers=alice.headers).json()["items"]
    assert (pending["status"], pending["size_bytes"]) == ("pending", None)
    response = httpx.post(body["url"], data=body["fields"], files={"file": ("blob", data, "audio/wav")})
    assert response.status_code == 204
    (recording,) = client.get("/v1/recordings", headers=alice.headers).json()["items"]
    assert recording["status"] == "available"  # verified on read: Uppy never calls back
    assert recording["size_bytes"] == len(data)
    assert recording["key"] == body["fields"]["key"]
    assert recording["metadata"] == {"take": "3"}
    assert (
        httpx.get(client.get(f"/v1/recordings/{recording['id']}/download", headers=alice.headers).json()["url"]).content
        == data
    )


def test_a_declared_size_is_pinned(client, alice):
    body = params(client, alice, 100).json()
    assert policy_range(body["fields"]) == ["content-length-range", 100, 100]
    response = httpx.post(body["url"], data=body["fields"], files={"file": ("blob", payload(101), "audio/wav")})
    # S3 refuses it by the policy's content-length-range; moto accepts it, and verification catches it.
    assert response.status_code in (204, 400)
    (recording,) = client.get("/v1/recordings", headers=alice.headers).json()["items"]
    if response.status_code == 204:
        assert recording["status"] == "failed"
        assert "size 101 bytes differs" in recording["failure_reason"]
    else:
        assert recording["status"] == "pending"


def test_a_single_upload_above_the_multipart_threshold_is_the_clients_choice(client, alice, settings):
    data = payload(settings.multipart_threshold_bytes + 1)
    body = params(client, alice).json()
    httpx.post(body["url"], data=body["fields"], files={"file": ("blob", data, "audio/wav")})
    (recording,) = client.get("/v1/recordings", headers=alice.headers).json()["items"]
    assert (recording["status"], recording["size_bytes"], recording["upload_method"]) == (
        "available",
        len(data),
        "POST",
    )


def test_a_pending_single_upload_without_bytes_stays_pending(client, alice):
    params(client, alice, 10)
    (recording,) = client.get("/v1/recordings", headers=alice.headers).json()["items"]
    assert recording["status"] == "pending"


@pytest.mark.parametrize(
    ("extra", "hint"),
    [
        ({"metadata[size]": "0"}, "greater than or equal to 1"),
        ({"metadata[size]": "ten"}, "valid integer"),
        # The schema states the deployment's limits, so these are schema validation errors too.
        ({"metadata[size]": str(5 * 1024 * MiB + 1)}, "less than or equal to"),
        ({"type": "text/html"}, "allowed here: audio/*"),
    ],
)
def test_params_problems_are_clear(client, alice, extra, hint):
    response = params(client, alice, **extra)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "/problems/validation-error"
    assert hint in response.json()["detail"]
    assert client.get("/v1/recordings", headers=alice.headers).json()["items"] == []


def test_multipart_lifecycle_through_the_companion_routes(client, alice):
    data = payload(SIZE)
    upload = start_multipart(client, alice, SIZE)
    assert upload["key"].startswith("alice/")
    assert upload["bucket"]
    batch = client.get(
        f"/v1/s3/multipart/{upload['uploadId']}/batch",
        params={"key": upload["key"], "partNumbers": "1,2"},
        headers=alice.headers,
    )
    assert set(batch.json()["presignedUrls"]) == {"1", "2"}
    parts = put_parts(client, alice, upload, data, [1, 2])
    listed = client.get(f"/v1/s3/multipart/{upload['uploadId']}", params={"key": upload["key"]}, headers=alice.headers)
    assert [(p["PartNumber"], p["Size"]) for p in listed.json()] == [(1, 5 * MiB), (2, 5 * MiB)]
    parts += put_parts(client, alice, upload, data, [3])

    done = client.post(
        f"/v1/s3/multipart/{upload['uploadId']}/complete",
        params={"key": upload["key"]},
        json={"parts": parts},
        headers=alice.headers,
    )
    assert done.status_code == 200, done.text
    assert done.json()["key"] == upload["key"]
    assert done.json()["location"].endswith(upload["key"])
    (recording,) = client.get("/v1/recordings", headers=alice.headers).json()["items"]
    assert recording["status"] == "available"
    assert recording["size_bytes"] == SIZE


def test_the_client_chooses_its_part_size_and_no_size_is_needed(client, alice):
    chunk = 6 * MiB
    data = payload(2 * chunk + 1000)  # two 6 MiB parts and a small last one
    upload = start_multipart(client, alice)
    parts = put_parts(client, alice, upload, data, [1, 2, 3], chunk=chunk)
    done = complete(client, alice, upload, parts)
    assert done.status_code == 200, done.text
    (recording,) = client.get("/v1/recordings", headers=alice.headers).json()["items"]
    assert (recording["status"], recording["size_bytes"], recording["part_count"]) == ("available", len(data), None)
    url = client.get(f"/v1/recordings/{recording['id']}/download", headers=alice.headers).json()["url"]
    assert httpx.get(url).content == data


def test_a_small_file_may_go_in_one_part(client, alice):
    data = payload(1000)
    upload = start_multipart(client, alice)
    done = complete(client, alice, upload, put_parts(client, alice, upload, data, [1]))
    assert done.status_code == 200, done.text
    (recording,) = client.get("/v1/recordings", headers=alice.headers).json()["items"]
    assert (recording["status"], recording["size_bytes"], recording["upload_method"]) == (
        "available",
        1000,
        "MULTIPART",
    )


def test_a_part_below_five_mib_that_is_not_the_last_is_refused(client, alice):
    data = payload(4 * MiB + 10)
    upload = start_multipart(client, alice)
    parts = put_parts(client, alice, upload, data, [1, 2], chunk=4 * MiB)
    done = complete(client, alice, upload, parts)
    assert done.status_code == 409
    assert done.json()["type"] == "/problems/invalid-parts"
    assert "at least 5242880 bytes" in done.json()["detail"]
    (recording,) = client.get("/v1/recordings", headers=alice.headers).json()["items"]
    assert recording["status"] == "pending"


def test_part_numbers_follow_s3s_limits(client, alice):
    upload = start_multipart(client, alice)
    route = f"/v1/s3/multipart/{upload['uploadId']}"
    assert client.get(f"{route}/10000", params={"key": upload["key"]}, headers=alice.headers).status_code == 200
    for number in (0, 10001):
        refused = client.get(f"{route}/{number}", params={"key": upload["key"]}, headers=alice.headers)
        assert refused.status_code == 422, number
        assert refused.headers["content-type"] == "application/problem+json"


def test_a_gap_in_the_parts_is_refused(client, alice):
    data = payload(SIZE)
    upload = start_multipart(client, alice)
    parts = put_parts(client, alice, upload, data, [1, 3])
    done = complete(client, alice, upload, parts)
    assert done.status_code == 409
    assert done.json()["type"] == "/problems/invalid-parts"


def test_with_a_declared_size_a_missing_last_part_can_still_be_added(client, alice):
    data = payload(SIZE)
    upload = start_multipart(client, alice, SIZE)
    parts = put_parts(client, alice, upload, data, [1, 2])
    refused = complete(client, alice, upload, parts)
    assert refused.status_code == 409
    assert refused.json()["type"] == "/problems/invalid-parts"
    assert f"not the declared {SIZE}" in refused.json()["detail"]
    parts += put_parts(client, alice, upload, data, [3])
    done = complete(client, alice, upload, parts)
    assert done.status_code == 200, done.text
    (recording,) = client.get("/v1/recordings", headers=alice.headers).json()["items"]
    assert (recording["status"], recording["size_bytes"]) == ("available", SIZE)


def test_abort_deletes_the_pending_upload(client, alice, s3, settings):
    upload = start_multipart(client, alice)
    aborted = client.delete(
        f"/v1/s3/multipart/{upload['uploadId']}", params={"key": upload["key"]}, headers=alice.headers
    )
    assert aborted.status_code == 200
    assert aborted.json() == {}
    assert not s3.list_multipart_uploads(Bucket=settings.s3_bucket).get("Uploads")
    assert client.get("/v1/recordings", headers=alice.headers).json()["items"] == []


def test_another_tenants_session_cannot_touch_the_upload(app, client, alice, bob):
    from fastapi.testclient import TestClient

    data = payload(SIZE)
    upload = start_multipart(client, alice)
    parts = put_parts(client, alice, upload, data, [1])
    key, upload_id = upload["key"], upload["uploadId"]
    with TestClient(app, base_url="http://testserver") as browser:
        sign_in(browser, bob)
        origin = {"Origin": OWN_ORIGIN}
        attempts = [
            browser.get(f"/v1/s3/multipart/{upload_id}/2", params={"key": key}),
            browser.get(f"/v1/s3/multipart/{upload_id}/batch", params={"key": key, "partNumbers": "2"}),
            browser.get(f"/v1/s3/multipart/{upload_id}", params={"key": key}),
            browser.post(
                f"/v1/s3/multipart/{upload_id}/complete", params={"key": key}, json={"parts": parts}, headers=origin
            ),
            browser.delete(f"/v1/s3/multipart/{upload_id}", params={"key": key}, headers=origin),
            # Bob's own key prefix with Alice's upload id, and Alice's key with a made-up id.
            browser.get(f"/v1/s3/multipart/{upload_id}", params={"key": key.replace("alice/", "bob/")}),
        ]
        for response in attempts:
            assert response.status_code == 404, response.request.url
            assert response.headers["content-type"] == "application/problem+json"
    wrong_id = client.get(f"/v1/s3/multipart/not-{upload_id}", params={"key": key}, headers=alice.headers)
    assert wrong_id.status_code == 404
    # Alice's upload is untouched and still completes.
    parts += put_parts(client, alice, upload, data, [2, 3])
    done = client.post(
        f"/v1/s3/multipart/{upload_id}/complete", params={"key": key}, json={"parts": parts}, headers=alice.headers
    )
    assert done.status_code == 200, done.text


def test_parts_adding_up_to_more_than_the_largest_upload_fail_the_recording(settings, alice, s3):
    from fastapi.testclient import TestClient

    from service.api.app import create_app

    small = settings.model_copy(update={"max_upload_bytes": 6 * MiB})
    with TestClient(create_app(small)) as client:
        data = payload(6 * MiB + 1)
        upload = start_multipart(client, alice)
        parts = put_parts(client, alice, upload, data, [1, 2])
        refused = complete(client, alice, upload, parts)
        assert refused.status_code == 409
        assert refused.json()["type"] == "/problems/verification-failed"
        (recording,) = client.get("/v1/recordings", headers=alice.headers).json()["items"]
        assert recording["status"] == "failed"
        assert f"outside 1..{6 * MiB} bytes" in recording["failure_reason"]
    assert not s3.list_multipart_uploads(Bucket=settings.s3_bucket).get("Uploads")  # the parts are gone
    assert not s3.list_object_versions(Bucket=settings.s3_bucket, Prefix=upload["key"]).get("Versions")
