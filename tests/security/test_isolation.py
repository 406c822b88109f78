"""Object-level authorization: every route that takes an id, key or upload id, discovered from the
OpenAPI schema, answers 404 to another tenant and changes nothing. A new id route without a case
here fails the test."""

from __future__ import annotations

import pytest

from service.api.app import create_app
from tests.api.uploading import MiB, complete, create, payload, upload_single
from tests.conftest import make_settings

ID_PARAMS = {"recording_id", "upload_id", "key"}
# Every id route: (method, path template) -> JSON body that would be valid for the owner.
CASES: dict[tuple[str, str], object] = {
    ("GET", "/v1/recordings/{recording_id}"): None,
    ("PATCH", "/v1/recordings/{recording_id}"): {"title": "mine now", "metadata": {"x": 1}},
    ("DELETE", "/v1/recordings/{recording_id}"): None,
    ("POST", "/v1/recordings/{recording_id}/restore"): None,
    ("GET", "/v1/recordings/{recording_id}/download"): None,
    ("GET", "/v1/recordings/{recording_id}/play"): None,
    ("GET", "/v1/recordings/{recording_id}/upload/parts"): None,
    ("GET", "/v1/recordings/{recording_id}/upload/parts/uploaded"): None,
    ("POST", "/v1/recordings/{recording_id}/complete"): None,
    ("GET", "/v1/s3/multipart/{upload_id}"): None,
    ("GET", "/v1/s3/multipart/{upload_id}/batch"): None,
    ("GET", "/v1/s3/multipart/{upload_id}/{part_number}"): None,
    ("POST", "/v1/s3/multipart/{upload_id}/complete"): {"parts": [{"PartNumber": 1, "ETag": "abc"}]},
    ("DELETE", "/v1/s3/multipart/{upload_id}"): None,
}


def id_routes() -> list[tuple[str, str]]:
    schema = create_app(make_settings("postgresql://unused@127.0.0.1/unused", "http://127.0.0.1:1")).openapi()
    found = []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            names = {p["name"] for p in operation.get("parameters", [])}
            if names & ID_PARAMS:
                found.append((method.upper(), path))
    return sorted(found)


ROUTES = id_routes()


def test_every_id_route_has_an_isolation_case():
    missing = [route for route in ROUTES if route not in CASES]
    assert not missing, f"add a two-tenant case for {missing}"
    assert len(ROUTES) >= 8


def _request(api, tenant, method, path, body, *, recording, upload_id, key, redirect=False):
    url = path.format(recording_id=recording["id"], upload_id=upload_id, part_number=1)
    params = {}
    if "/v1/s3/" in path:
        params["key"] = key
    if path.endswith(("/upload/parts", "/batch")):
        params["part_numbers" if "/v1/recordings" in path else "partNumbers"] = "1,2"
    if redirect:
        params["redirect"] = "true"
    return api.request(method, url, params=params, json=body, headers=tenant.headers, follow_redirects=False)


@pytest.fixture
def victims(api, alice):
    available = upload_single(api, alice, payload(10))["recording"]
    assert complete(api, alice, available["id"]).status_code == 200
    multipart = create(api, alice, size=11 * MiB)
    deleted = upload_single(api, alice, payload(10))["recording"]
    assert complete(api, alice, deleted["id"]).status_code == 200
    assert api.delete(f"/v1/recordings/{deleted['id']}", headers=alice.headers).status_code == 204
    return {
        "available": (available, "none"),
        "multipart": (multipart["recording"], multipart["upload"]["upload_id"]),
        "deleted": (deleted, "none"),
    }


def _snapshot(api, alice, s3, settings, victims):
    rows = {
        name: api.get(f"/v1/recordings/{r['id']}", headers=alice.headers).json() for name, (r, _) in victims.items()
    }
    listed = s3.list_multipart_uploads(Bucket=settings.s3_bucket).get("Uploads", [])
    uploads = sorted(u["UploadId"] for u in listed if u["Key"].startswith("alice/"))
    versions = s3.list_object_versions(Bucket=settings.s3_bucket, Prefix="alice/")
    objects = sorted(v["VersionId"] for v in versions.get("Versions", []) + versions.get("DeleteMarkers", []))
    return rows, uploads, objects


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_other_tenant_gets_404_and_changes_nothing(api, alice, bob, s3, settings, victims, method, path):
    before = _snapshot(api, alice, s3, settings, victims)
    bobs_own = create(api, bob, size=11 * MiB)
    attempts = []
    for recording, upload_id in victims.values():
        attempts.append({"recording": recording, "upload_id": upload_id, "key": recording["key"]})
        # Uppy routes: the other tenant's key with the caller's own upload id, and the reverse.
        attempts.append({"recording": recording, "upload_id": bobs_own["upload"]["upload_id"], "key": recording["key"]})
        attempts.append({"recording": bobs_own["recording"], "upload_id": upload_id, "key": recording["key"]})
    for attempt in attempts:
        for redirect in (False, True) if path.endswith("/download") else (False,):
            response = _request(api, bob, method, path, CASES[(method, path)], redirect=redirect, **attempt)
            if attempt["recording"] is bobs_own["recording"] and "/v1/s3/" not in path:
                continue  # bob's own recording: not an isolation question
            assert response.status_code == 404, (attempt, response.status_code, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            assert "alice" not in response.text
    assert _snapshot(api, alice, s3, settings, victims) == before


def test_listing_never_leaks_and_keys_carry_the_callers_tenant(api, alice, bob, victims):
    created = [
        create(api, bob, size=10)["recording"]["key"],
        create(api, bob, size=11 * MiB)["recording"]["key"],
    ]
    single = api.get(
        "/v1/s3/params", params={"filename": "a.wav", "type": "audio/wav", "metadata[size]": "10"}, headers=bob.headers
    )
    assert single.status_code == 200, single.text
    created.append(single.json()["fields"]["key"])
    multi = api.post(
        "/v1/s3/multipart",
        json={"filename": "b.wav", "type": "audio/wav", "metadata": {"size": 11 * MiB, "key": "alice/x"}},
        headers=bob.headers,
    )
    assert multi.status_code == 200, multi.text
    created.append(multi.json()["key"])
    assert all(key.startswith("bob/") for key in created), created

    alices_ids = {r["id"] for r, _ in victims.values()}
    for status in (None, "pending", "available", "failed", "expired", "deleted"):
        params = {"limit": 200} | ({"status": status} if status else {})
        page = api.get("/v1/recordings", params=params, headers=bob.headers)
        assert page.status_code == 200
        items = page.json()["items"]
        assert not {item["id"] for item in items} & alices_ids
        assert all(item["key"].startswith("bob/") for item in items)
