"""Client-side helpers: what a real caller does with the presigned URLs (bytes over HTTP)."""

from __future__ import annotations

import base64
import hashlib
import os

import httpx

MiB = 1024 * 1024


def payload(size: int) -> bytes:
    return os.urandom(size)


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def create(client, tenant, *, size: int, content_type: str = "audio/wav", filename: str = "take.wav", **extra):
    body = {"filename": filename, "content_type": content_type, "size_bytes": size, **extra}
    response = client.post("/v1/recordings", json=body, headers=tenant.headers)
    assert response.status_code == 201, response.text
    return response.json()


def post_form(upload: dict, data: bytes, content_type: str | None = None) -> httpx.Response:
    """Send bytes with the presigned POST exactly as a browser form would."""
    content_type = content_type or upload["fields"]["Content-Type"]
    response = httpx.post(upload["url"], data=upload["fields"], files={"file": ("blob", data, content_type)})
    assert response.status_code in (200, 201, 204), response.text
    return response


def put_parts(client, tenant, recording: dict, data: bytes, part_numbers: list[int]) -> dict[int, str]:
    """PUT the given parts through presigned part URLs; returns part number -> ETag."""
    rid = recording["id"]
    part_size = recording["part_size"]
    urls = client.get(
        f"/v1/recordings/{rid}/upload/parts",
        params={"part_numbers": ",".join(map(str, part_numbers))},
        headers=tenant.headers,
    )
    assert urls.status_code == 200, urls.text
    etags = {}
    for number in part_numbers:
        chunk = data[(number - 1) * part_size : number * part_size]
        response = httpx.put(urls.json()["urls"][str(number)], content=chunk)
        assert response.status_code == 200, response.text
        etags[number] = response.headers["ETag"].strip('"')
    return etags


def upload_single(client, tenant, data: bytes, **extra) -> dict:
    created = create(client, tenant, size=len(data), **extra)
    assert created["upload"]["method"] == "POST"
    post_form(created["upload"], data)
    return created


def complete(client, tenant, rid: str, parts: list[dict] | None = None) -> httpx.Response:
    kwargs = {"json": {"parts": parts}} if parts is not None else {}
    return client.post(f"/v1/recordings/{rid}/complete", headers=tenant.headers, **kwargs)
