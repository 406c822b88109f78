"""API Gateway's path prefixes: which part of a path the gateway added (stage, custom domain base
path), and how GatewayRootPath hands it to the app as the ASGI ``root_path``."""

from __future__ import annotations

import pytest

from handlers.gateway import GatewayRootPath, _rest_stage, gateway_prefix
from tests.unit.conftest import run_async

EXECUTE_API = "abc123.execute-api.eu-west-1.amazonaws.com"


def http_v2(stage: str = "$default", domain: str = EXECUTE_API) -> dict:
    return {"version": "2.0", "requestContext": {"stage": stage, "domainName": domain}}


def rest_v1(path: str, public_path: str, stage: str = "prod", domain: str = EXECUTE_API) -> dict:
    return {"path": path, "requestContext": {"stage": stage, "domainName": domain, "path": public_path}}


@pytest.mark.parametrize(
    ("event", "path", "base_path", "prefix"),
    [
        # HTTP API, default stage: nothing in front of the routes.
        (http_v2(), "/v1/recordings", "", ""),
        # HTTP API, named stage on the default endpoint: the stage is the first segment.
        (http_v2("prod"), "/prod/v1/recordings", "", "/prod"),
        (http_v2("prod"), "/prod", "", "/prod"),
        # Only a whole segment is the stage.
        (http_v2("prod"), "/production/v1/recordings", "", ""),
        # A stage named like a route is stripped once.
        (http_v2("v1"), "/v1/v1/recordings", "", "/v1"),
        # On a custom domain the stage is never in the path; the base path mapping is.
        (http_v2("prod", "api.example.com"), "/prod/v1/recordings", "", ""),
        (http_v2("prod", "api.example.com"), "/recordings/v1/recordings", "recordings", "/recordings"),
        # The configured base path is normalized and matched by whole segments only.
        (http_v2(domain="api.example.com"), "/recordings/v1/x", "/recordings/", "/recordings"),
        (http_v2(domain="api.example.com"), "/recordings/v1/x", " recordings ", "/recordings"),
        (http_v2(domain="api.example.com"), "/recordingsv2/v1/x", "recordings", ""),
        (http_v2(domain="api.example.com"), "/v1/x", "recordings", ""),
        # REST API (v1) paths never carry the stage: only the base path counts.
        (rest_v1("/v1/recordings", "/prod/v1/recordings"), "/prod/v1/recordings", "", ""),
        (
            rest_v1("/recordings/v1/x", "/recordings/v1/x", domain="api.example.com"),
            "/recordings/v1/x",
            "recordings",
            "/recordings",
        ),
        # No request context at all (a hand-made event): no prefix.
        ({"version": "2.0"}, "/v1/recordings", "", ""),
    ],
)
def test_gateway_prefix(event, path, base_path, prefix):
    assert gateway_prefix(event, path, base_path) == prefix


@pytest.mark.parametrize(
    ("event", "stage"),
    [
        (rest_v1("/v1/recordings", "/prod/v1/recordings"), "/prod"),
        # The request context's path is the client's, percent-decoded or not: compared decoded.
        (rest_v1("/v1/recordings/a%20b", "/prod/v1/recordings/a b"), "/prod"),
        (rest_v1("/v1/recordings/a b", "/prod/v1/recordings/a%20b"), "/prod"),
        # A custom domain: the context's path is the event's path, nothing to add.
        (rest_v1("/recordings/v1/x", "/recordings/v1/x", domain="api.example.com"), ""),
        # A context path that does not end with the event's path is not trusted.
        (rest_v1("/v1/recordings", "/prod/v1/other"), ""),
        ({"path": "/v1/recordings"}, ""),
        ({"path": "", "requestContext": {"path": "/prod"}}, ""),
        # HTTP API (v2) events and other events carry no REST stage.
        ({**http_v2("prod"), "path": "/v1/x", "requestContext": {"path": "/prod/v1/x"}}, ""),
        ({"Records": []}, ""),
    ],
)
def test_rest_stage(event, stage):
    assert _rest_stage(event) == stage


class Recorder:
    """An ASGI app that keeps the scope it was called with."""

    def __init__(self) -> None:
        self.scopes: list[dict] = []

    async def __call__(self, scope, receive, send) -> None:
        self.scopes.append(scope)


def call(app: GatewayRootPath, scope: dict) -> dict:
    async def receive() -> dict:
        return {"type": "http.request", "body": b""}

    async def send(message: dict) -> None:
        pass

    run_async(app(scope, receive, send))
    return app.app.scopes[-1]


def http_scope(path: str, event: dict | None, root_path: str = "") -> dict:
    scope = {"type": "http", "method": "GET", "path": path, "root_path": root_path}
    if event is not None:
        scope["aws.event"] = event
    return scope


def test_a_rest_stage_is_put_back_in_front_of_the_path_and_becomes_the_root_path():
    event = rest_v1("/v1/recordings", "/prod/v1/recordings")
    seen = call(GatewayRootPath(Recorder()), http_scope("/v1/recordings", event))
    assert seen["path"] == "/prod/v1/recordings"
    assert seen["root_path"] == "/prod"


def test_an_http_api_stage_stays_in_the_path_and_becomes_the_root_path():
    seen = call(GatewayRootPath(Recorder()), http_scope("/prod/v1/recordings", http_v2("prod")))
    assert (seen["path"], seen["root_path"]) == ("/prod/v1/recordings", "/prod")


def test_the_configured_base_path_becomes_the_root_path():
    app = GatewayRootPath(Recorder(), base_path="recordings")
    seen = call(app, http_scope("/recordings/v1/x", http_v2("prod", "api.example.com")))
    assert (seen["path"], seen["root_path"]) == ("/recordings/v1/x", "/recordings")


def test_an_existing_root_path_is_extended():
    seen = call(GatewayRootPath(Recorder()), http_scope("/prod/v1/x", http_v2("prod"), root_path="/outer"))
    assert seen["root_path"] == "/outer/prod"


@pytest.mark.parametrize(
    "scope",
    [
        http_scope("/v1/recordings", http_v2()),  # default stage: nothing to add
        http_scope("/prod/v1/recordings", None),  # not from API Gateway (a local server)
        {"type": "lifespan", "aws.event": http_v2("prod")},
    ],
)
def test_scopes_without_a_prefix_pass_through_unchanged(scope):
    assert call(GatewayRootPath(Recorder()), scope) is scope
