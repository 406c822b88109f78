"""OpenAPI links: which responses supply the ids that other operations take.

A client (or a stateful test run) follows them from the operation that creates something to
every operation on what it created, with the real ids rather than guessed ones.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from service.core.problems import PROBLEM_JSON

# How a route documents its error responses: ``responses={404: PROBLEM, ...}``.
PROBLEM: dict[str, Any] = {"content": {PROBLEM_JSON: {}}, "description": "Problem details (RFC 9457)"}

# (method, path, status) of a response -> the parameters it supplies, as runtime expressions.
SOURCES: dict[tuple[str, str, str], dict[str, Any]] = {
    ("post", "/v1/recordings", "201"): {"recording_id": "$response.body#/recording/id"},
    ("post", "/v1/recordings/{recording_id}/complete", "200"): {"recording_id": "$response.body#/id"},
    ("delete", "/v1/recordings/{recording_id}", "204"): {"recording_id": "$request.path.recording_id"},
    ("post", "/v1/s3/multipart", "200"): {
        "upload_id": "$response.body#/uploadId",
        "key": "$response.body#/key",
        "part_number": 1,  # a constant: every upload has a first part
    },
}


def add_links(schema: dict[str, Any]) -> None:
    """Link each source response to every operation whose path parameters it supplies."""
    paths = schema.get("paths", {})
    for (method, path, status), supplied in SOURCES.items():
        response = paths.get(path, {}).get(method, {}).get("responses", {}).get(status)
        if response is None:
            continue
        links = response.setdefault("links", {})
        for target_path, operations in paths.items():
            for target_method, operation in operations.items():
                parameters = operation.get("parameters", [])
                path_parameters = {p["name"] for p in parameters if p["in"] == "path"}
                if not path_parameters or not path_parameters <= supplied.keys():
                    continue
                if (target_method, target_path) == (method, path):
                    continue
                names = {p["name"] for p in parameters}
                links[operation["operationId"]] = {
                    "operationId": operation["operationId"],
                    "parameters": {name: value for name, value in supplied.items() if name in names},
                }


def document_links(app: FastAPI) -> None:
    build = app.openapi
    linked: list[int] = []

    def openapi() -> dict[str, Any]:
        schema = build()
        if id(schema) not in linked:  # built once and cached: link it once
            add_links(schema)
            linked.append(id(schema))
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
