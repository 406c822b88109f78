"""The API contract: OPTIONS and Allow as HTTP says, the schema states what the code checks,
links from creates to what takes their ids, metadata limits, and stored data that can never
make a response fail."""

from __future__ import annotations

import re
import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from service.api.app import create_app
from service.core.db import session_scope
from service.recordings.models import recordings
from tests.conftest import make_settings

VALID = {"filename": "a.wav", "content_type": "audio/wav", "size_bytes": 10}


def _methods(response) -> set[str]:
    return {method.strip() for method in response.headers["allow"].split(",")}


def _create(api, tenant, **extra) -> dict:
    response = api.post("/v1/recordings", json={**VALID, **extra}, headers=tenant.headers)
    assert response.status_code == 201, response.text
    return response.json()["recording"]


# OPTIONS and Allow ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/v1/recordings", {"GET", "POST", "OPTIONS"}),
        (f"/v1/recordings/{uuid.uuid4()}", {"GET", "PATCH", "DELETE", "OPTIONS"}),
        (f"/v1/recordings/{uuid.uuid4()}/complete", {"POST", "OPTIONS"}),
        ("/v1/auth/session", {"GET", "POST", "DELETE", "OPTIONS"}),
        ("/v1/s3/multipart/some-upload/complete", {"POST", "OPTIONS"}),
        ("/health", {"GET", "OPTIONS"}),
    ],
)
def test_options_lists_every_method_of_the_path(api, path, expected):
    response = api.options(path)  # no credentials needed to ask what a resource supports
    assert response.status_code == 204
    assert _methods(response) == expected
    assert response.content == b""


def test_options_on_an_unknown_path_is_404(api):
    response = api.options("/v1/nothing-here")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def test_405_lists_every_method_of_the_path(api, alice):
    response = api.put(f"/v1/recordings/{uuid.uuid4()}", headers=alice.headers)
    assert response.status_code == 405
    assert response.headers["content-type"] == "application/problem+json"
    assert _methods(response) == {"GET", "PATCH", "DELETE", "OPTIONS"}


def test_cors_preflight_is_still_answered_by_cors(settings):
    configured = make_settings(
        settings.database_url.get_secret_value(),
        settings.s3_endpoint_url,
        s3_bucket=settings.s3_bucket,
        cors_origins="https://app.example.com",
    )
    with TestClient(create_app(configured)) as api:
        preflight = api.options(
            "/v1/recordings",
            headers={"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"},
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://app.example.com"
        plain = api.options("/v1/recordings")
        assert plain.status_code == 204
        assert _methods(plain) == {"GET", "POST", "OPTIONS"}


# The schema states the deployment's rules ----------------------------------------------------


def test_create_schema_states_the_configured_limits(settings):
    configured = make_settings(
        settings.database_url.get_secret_value(),
        settings.s3_endpoint_url,
        s3_bucket=settings.s3_bucket,
        max_filename_length=100,
        max_upload_bytes=50 * 1024 * 1024,
        allowed_content_types="audio/*,application/pdf",
    )
    with TestClient(create_app(configured)) as api:
        schema = api.get("/openapi.json").json()
    create = schema["components"]["schemas"]["RecordingCreate"]
    properties = create["properties"]
    assert properties["filename"]["maxLength"] == 100
    assert properties["size_bytes"]["maximum"] == 50 * 1024 * 1024
    content_type = re.compile(properties["content_type"]["pattern"])
    assert content_type.fullmatch("application/pdf")
    assert content_type.fullmatch("Audio/Ogg")
    assert not content_type.fullmatch("video/mp4")
    assert "pattern" in properties["checksum_sha256"]["anyOf"][0]
    # A checksum with an upload above the single-upload threshold is refused, and says so.
    assert create["not"]["properties"]["size_bytes"]["minimum"] == configured.multipart_threshold_bytes + 1
    cursor = next(p for p in schema["paths"]["/v1/recordings"]["get"]["parameters"] if p["name"] == "cursor")
    assert "pattern" in cursor["schema"]["anyOf"][0]


@pytest.mark.parametrize(
    ("change", "accepted"),
    [
        ({"content_type": "AUDIO/MPEG"}, True),  # media types are case-insensitive
        ({"content_type": "text/html"}, False),
        ({"filename": "..."}, False),
        ({"filename": ".hidden"}, True),
        ({"filename": "rtl\u202eevil.wav"}, False),
        ({"title": "tab\there"}, False),
        ({"title": "Été à Paris"}, True),
    ],
)
def test_what_the_schema_allows_is_what_the_api_accepts(api, alice, change, accepted):
    properties = api.get("/openapi.json").json()["components"]["schemas"]["RecordingCreate"]["properties"]
    ((field, value),) = change.items()
    field_schema = properties[field].get("anyOf", [properties[field]])[0]
    assert bool(re.fullmatch(field_schema["pattern"], value)) is accepted
    response = api.post("/v1/recordings", json={**VALID, **change}, headers=alice.headers)
    assert (response.status_code == 201) is accepted, response.text


def test_create_links_to_every_operation_on_the_recording(api):
    schema = api.get("/openapi.json").json()
    links = schema["paths"]["/v1/recordings"]["post"]["responses"]["201"]["links"]
    takes_an_id = {
        operation["operationId"]
        for path, operations in schema["paths"].items()
        if "{recording_id}" in path
        for operation in operations.values()
    }
    assert {link["operationId"] for link in links.values()} == takes_an_id
    assert all(link["parameters"] == {"recording_id": "$response.body#/recording/id"} for link in links.values())


def test_docs_can_be_turned_off_and_the_schema_stays(settings):
    configured = make_settings(settings.database_url.get_secret_value(), settings.s3_endpoint_url, docs_enabled=False)
    with TestClient(create_app(configured)) as api:
        assert api.get("/docs").status_code == 404
        assert api.get("/redoc").status_code == 404
        assert api.get("/openapi.json").status_code == 200


# Metadata limits ------------------------------------------------------------------------------


def _deep(levels: int) -> dict:
    value: dict = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    ("metadata", "needle"),
    [
        (_deep(5), "at most 4 levels"),
        (_deep(256), "at most 4 levels"),
        ({f"k{i}": i for i in range(33)}, "at most 32 items"),
        ({"k": list(range(33))}, "at most 32 items"),
        ({"x" * 65: 1}, "at most 64 characters"),
        ({"k": "x" * 1025}, "at most 1024 characters"),
        ({"k": "nul\u0000"}, "NUL"),
        ({f"k{i}": "x" * 1000 for i in range(17)}, "at most 16384 bytes"),
    ],
)
def test_metadata_limits_are_a_clear_422_on_create_and_patch(api, alice, metadata, needle):
    created = api.post("/v1/recordings", json={**VALID, "metadata": metadata}, headers=alice.headers)
    assert created.status_code == 422
    assert created.headers["content-type"] == "application/problem+json"
    assert needle in created.json()["detail"], created.json()
    good = _create(api, alice, metadata={"ok": True})
    patched = api.patch(f"/v1/recordings/{good['id']}", json={"metadata": metadata}, headers=alice.headers)
    assert patched.status_code == 422
    assert needle in patched.json()["detail"]
    assert api.get(f"/v1/recordings/{good['id']}", headers=alice.headers).json()["metadata"] == {"ok": True}


def test_metadata_at_the_limits_is_kept_exactly(api, alice):
    metadata = {"deep": _deep(3), "list": [1, 2.5, "x", None, True], "k" * 64: "v" * 1024}
    created = _create(api, alice, metadata=metadata)
    assert api.get(f"/v1/recordings/{created['id']}", headers=alice.headers).json()["metadata"] == metadata


def test_patch_cannot_null_the_metadata(api, alice):
    created = _create(api, alice)
    response = api.patch(f"/v1/recordings/{created['id']}", json={"metadata": None}, headers=alice.headers)
    assert response.status_code == 422


def test_metadata_stored_before_the_limits_never_breaks_a_response(api, alice, settings):
    # GIVEN a row whose metadata was stored before the limits (nested 300 levels deep)
    poisoned = _create(api, alice)
    healthy = _create(api, alice, metadata={"fine": 1})
    with session_scope(settings) as session:
        session.execute(
            update(recordings).where(recordings.c.id == uuid.UUID(poisoned["id"])).values(metadata=_deep(300))
        )
        session.commit()
    # THEN reading it, listing the tenant's recordings and replacing the metadata all work
    read = api.get(f"/v1/recordings/{poisoned['id']}", headers=alice.headers)
    assert read.status_code == 200
    assert read.json()["metadata"] == {}
    listed = api.get("/v1/recordings", headers=alice.headers)
    assert listed.status_code == 200
    assert {item["id"] for item in listed.json()["items"]} == {poisoned["id"], healthy["id"]}
    fixed = api.patch(f"/v1/recordings/{poisoned['id']}", json={"metadata": {"new": 1}}, headers=alice.headers)
    assert fixed.status_code == 200
    assert fixed.json()["metadata"] == {"new": 1}


def test_a_deployment_can_set_a_smaller_metadata_size(settings, alice):
    configured = make_settings(
        settings.database_url.get_secret_value(),
        settings.s3_endpoint_url,
        s3_bucket=settings.s3_bucket,
        max_metadata_bytes=100,
    )
    with TestClient(create_app(configured)) as api:
        big = {"note": "x" * 200}
        created = api.post("/v1/recordings", json={**VALID, "metadata": big}, headers=alice.headers)
        assert created.status_code == 422
        assert created.json()["type"] == "/problems/metadata-too-large"
        small = _create(api, alice, metadata={"note": "short"})
        patched = api.patch(f"/v1/recordings/{small['id']}", json={"metadata": big}, headers=alice.headers)
        assert patched.status_code == 422
        assert patched.json()["type"] == "/problems/metadata-too-large"
