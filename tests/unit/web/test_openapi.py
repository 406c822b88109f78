"""OpenAPI links: the responses that create something point at every operation on it, with the
runtime expressions that carry its ids."""

from __future__ import annotations

import copy

from fastapi import FastAPI

from service.web.openapi import SOURCES, add_links, document_links


def operation(operation_id: str, *parameters: tuple[str, str], status: str = "200") -> dict:
    return {
        "operationId": operation_id,
        "parameters": [{"name": name, "in": where} for name, where in parameters],
        "responses": {status: {"description": "ok"}},
    }


def schema() -> dict:
    return {
        "paths": {
            "/v1/recordings": {
                "post": operation("create", status="201"),
                "get": operation("list", ("limit", "query")),
            },
            "/v1/recordings/{recording_id}": {
                "get": operation("read", ("recording_id", "path")),
                "delete": operation("delete", ("recording_id", "path"), status="204"),
            },
            "/v1/recordings/{recording_id}/complete": {"post": operation("complete", ("recording_id", "path"))},
            "/v1/s3/multipart": {"post": operation("start_multipart")},
            "/v1/s3/multipart/{upload_id}": {"get": operation("parts", ("upload_id", "path"), ("key", "query"))},
            "/v1/s3/multipart/{upload_id}/{part_number}": {
                "get": operation("sign_part", ("upload_id", "path"), ("part_number", "path"), ("key", "query"))
            },
            "/v1/other/{other_id}": {"get": operation("other", ("other_id", "path"))},
        }
    }


def links(document: dict, path: str, method: str, status: str) -> dict:
    return document["paths"][path][method]["responses"][status].get("links", {})


def test_a_created_recording_links_to_every_operation_on_its_id():
    document = schema()
    add_links(document)
    created = links(document, "/v1/recordings", "post", "201")
    assert set(created) == {"read", "delete", "complete"}
    assert created["read"] == {
        "operationId": "read",
        "parameters": {"recording_id": "$response.body#/recording/id"},
    }


def test_operations_needing_ids_the_response_does_not_supply_are_not_linked():
    document = schema()
    add_links(document)
    created = links(document, "/v1/recordings", "post", "201")
    assert "other" not in created  # other_id is supplied by nothing
    assert "list" not in created  # no path parameters: nothing to link
    assert "parts" not in created  # upload_id comes from the multipart response only


def test_a_source_does_not_link_to_itself():
    document = schema()
    add_links(document)
    assert "delete" not in links(document, "/v1/recordings/{recording_id}", "delete", "204")
    assert "complete" not in links(document, "/v1/recordings/{recording_id}/complete", "post", "200")
    deleted = links(document, "/v1/recordings/{recording_id}", "delete", "204")
    assert deleted["read"]["parameters"] == {"recording_id": "$request.path.recording_id"}


def test_only_the_parameters_an_operation_takes_are_passed_constants_included():
    document = schema()
    add_links(document)
    started = links(document, "/v1/s3/multipart", "post", "200")
    assert started["parts"]["parameters"] == {"upload_id": "$response.body#/uploadId", "key": "$response.body#/key"}
    assert started["sign_part"]["parameters"] == {
        "upload_id": "$response.body#/uploadId",
        "key": "$response.body#/key",
        "part_number": 1,
    }


def test_missing_source_operations_are_skipped():
    document = {"paths": {"/v1/recordings/{recording_id}": {"get": operation("read", ("recording_id", "path"))}}}
    before = copy.deepcopy(document)
    add_links(document)
    assert document == before
    add_links({})  # no paths at all


def test_the_app_schema_is_linked_once():
    app = FastAPI()

    @app.post("/v1/recordings", status_code=201, operation_id="create")
    def create() -> dict:
        return {}

    @app.get("/v1/recordings/{recording_id}", operation_id="read")
    def read(recording_id: str) -> dict:
        return {}

    document_links(app)
    first = app.openapi()
    assert links(first, "/v1/recordings", "post", "201") == {
        "read": {"operationId": "read", "parameters": {"recording_id": "$response.body#/recording/id"}}
    }
    assert app.openapi() is first
    assert len(links(first, "/v1/recordings", "post", "201")) == 1


def test_every_source_exists_in_the_service_schema_and_links_somewhere():
    from service.api.app import create_app
    from service.core.settings import Settings

    document = create_app(Settings(environment="test")).openapi()
    for (method, path, status), supplied in SOURCES.items():
        response = document["paths"][path][method]["responses"][status]
        assert response["links"], (method, path, status)
        for link in response["links"].values():
            assert set(link["parameters"]) <= set(supplied)
