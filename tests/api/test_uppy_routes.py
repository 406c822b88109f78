"""Companion-compatible S3 routes (what @uppy/aws-s3 calls with companionEndpoint)."""

from __future__ import annotations

import httpx
import pytest

from tests.api.test_sessions import OWN_ORIGIN, sign_in
from tests.api.uploading import MiB, payload

SIZE = 11 * MiB  # three 5 MiB parts


def params(client, tenant, size: int, **extra):
    query = {"filename": "memo.wav", "type": "audio/wav", "metadata[size]": str(size), "metadata[take]": "3", **extra}
    return client.get("/v1/s3/params", params=query, headers=tenant.headers)


def start_multipart(client, tenant, size: int = SIZE) -> dict:
    body = {"filename": "long.wav", "type": "audio/wav", "metadata": {"size": size, "name": "long.wav"}}
    response = client.post("/v1/s3/multipart", json=body, headers=tenant.headers)
    assert response.status_code == 200, response.text
    return response.json()


def put_parts(client, tenant, upload: dict, data: bytes, numbers: list[int]) -> list[dict]:
    parts = []
    for number in numbers:
        signed = client.get(
            f"/v1/s3/multipart/{upload['uploadId']}/{number}", params={"key": upload["key"]}, headers=tenant.headers
        )
        assert signed.status_code == 200, signed.text
        assert signed.json()["expires"] > 0
        chunk = data[(number - 1) * 5 * MiB : number * 5 * MiB]
        response = httpx.put(signed.json()["url"], content=chunk)
        assert response.status_code == 200
        parts.append({"PartNumber": number, "ETag": response.headers["ETag"]})
    return parts


def test_single_upload_params_then_read_repair_makes_it_available(client, alice):
    data = payload(1234)
    signed = params(client, alice, len(data))
    assert signed.status_code == 200, signed.text
    body = signed.json()
    assert body["method"] == "POST"
    assert body["expires"] > 0
    assert body["url"].endswith("/")
    assert body["fields"]["key"].startswith("alice/")
    response = httpx.post(body["url"], data=body["fields"], files={"file": ("blob", data, "audio/wav")})
    assert response.status_code == 204
    (recording,) = client.get("/v1/recordings", headers=alice.headers).json()["items"]
    assert recording["status"] == "available"  # verified on read: Uppy never calls back
    assert recording["key"] == body["fields"]["key"]
    assert recording["metadata"] == {"take": "3"}
    assert (
        httpx.get(client.get(f"/v1/recordings/{recording['id']}/download", headers=alice.headers).json()["url"]).content
        == data
    )


def test_a_pending_single_upload_without_bytes_stays_pending(client, alice):
    params(client, alice, 10)
    (recording,) = client.get("/v1/recordings", headers=alice.headers).json()["items"]
    assert recording["status"] == "pending"


def test_bytes_of_another_size_never_become_available(client, alice, s3, settings):
    body = params(client, alice, 100).json()
    response = httpx.post(body["url"], data=body["fields"], files={"file": ("blob", payload(101), "audio/wav")})
    # S3 refuses it by the policy's content-length-range; moto accepts it, and verification catches it.
    assert response.status_code in (204, 400)
    (recording,) = client.get("/v1/recordings", headers=alice.headers).json()["items"]
    if response.status_code == 204:
        assert recording["status"] == "failed"
        assert "size 101 bytes differs" in recording["failure_reason"]
        assert not s3.list_object_versions(Bucket=settings.s3_bucket, Prefix=recording["key"]).get("Versions")
    else:
        assert recording["status"] == "pending"


@pytest.mark.parametrize(
    ("extra", "slug"),
    [
        ({"metadata[size]": ""}, "size-required"),
        ({"metadata[size]": str(6 * MiB)}, "use-multipart"),
        ({"type": "text/html"}, "content-type-not-allowed"),
    ],
)
def test_params_problems_are_clear(client, alice, extra, slug):
    response = params(client, alice, 10, **extra)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == f"/problems/{slug}"
    assert client.get("/v1/recordings", headers=alice.headers).json()["items"] == []


def test_multipart_lifecycle_through_the_companion_routes(client, alice):
    data = payload(SIZE)
    upload = start_multipart(client, alice)
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


def test_completing_with_a_missing_part_is_refused(client, alice):
    data = payload(SIZE)
    upload = start_multipart(client, alice)
    parts = put_parts(client, alice, upload, data, [1, 2])
    done = client.post(
        f"/v1/s3/multipart/{upload['uploadId']}/complete",
        params={"key": upload["key"]},
        json={"parts": parts},
        headers=alice.headers,
    )
    assert done.status_code == 409
    assert done.json()["type"] == "/problems/invalid-parts"


def test_abort_deletes_the_pending_upload(client, alice, s3, settings):
    upload = start_multipart(client, alice)
    aborted = client.delete(
        f"/v1/s3/multipart/{upload['uploadId']}", params={"key": upload["key"]}, headers=alice.headers
    )
    assert aborted.status_code == 200
    assert aborted.json() == {}
    assert not s3.list_multipart_uploads(Bucket=settings.s3_bucket).get("Uploads")
    assert client.get("/v1/recordings", headers=alice.headers).json()["items"] == []


def test_small_files_are_refused_as_multipart(client, alice):
    response = client.post(
        "/v1/s3/multipart",
        json={"filename": "a.wav", "type": "audio/wav", "metadata": {"size": 10}},
        headers=alice.headers,
    )
    assert response.status_code == 422
    assert response.json()["type"] == "/problems/use-single-upload"


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
