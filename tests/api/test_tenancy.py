"""One tenant never sees or touches another tenant's recordings: every id route answers 404."""

import pytest

from tests.api.uploading import MiB, complete, create, payload, upload_single


@pytest.fixture
def alices(client, alice):
    available = upload_single(client, alice, payload(10))["recording"]
    assert complete(client, alice, available["id"]).status_code == 200
    multipart = create(client, alice, size=11 * MiB)["recording"]
    return {"available": available, "multipart": multipart}


ROUTES = [
    ("GET", "/v1/recordings/{id}", None),
    ("PATCH", "/v1/recordings/{id}", {"title": "mine now"}),
    ("DELETE", "/v1/recordings/{id}", None),
    ("POST", "/v1/recordings/{id}/restore", None),
    ("GET", "/v1/recordings/{id}/download", None),
    ("GET", "/v1/recordings/{id}/download?redirect=true", None),
    ("GET", "/v1/recordings/{id}/upload/parts?part_numbers=1", None),
    ("GET", "/v1/recordings/{id}/upload/parts/uploaded", None),
    ("POST", "/v1/recordings/{id}/complete", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
@pytest.mark.parametrize("which", ["available", "multipart"])
def test_other_tenant_gets_404_on_every_id_route(client, alices, bob, alice, method, path, body, which):
    recording = alices[which]
    before = client.get(f"/v1/recordings/{recording['id']}", headers=alice.headers).json()
    response = client.request(
        method, path.format(id=recording["id"]), json=body, headers=bob.headers, follow_redirects=False
    )
    assert response.status_code == 404, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert client.get(f"/v1/recordings/{recording['id']}", headers=alice.headers).json() == before


def test_listing_never_shows_another_tenants_rows(client, alice, bob, alices):
    create(client, bob, size=10)
    bobs = client.get("/v1/recordings", headers=bob.headers).json()["items"]
    assert len(bobs) == 1
    assert all(item["key"].startswith("bob/") for item in bobs)
    for status in ("available", "pending", "deleted"):
        items = client.get(f"/v1/recordings?status={status}", headers=bob.headers).json()["items"]
        assert not {item["id"] for item in items} & {r["id"] for r in alices.values()}


def test_unknown_recording_is_404_too(client, alice):
    response = client.get("/v1/recordings/00000000-0000-4000-8000-000000000000", headers=alice.headers)
    assert response.status_code == 404
    assert response.json()["type"] == "/problems/not-found"
