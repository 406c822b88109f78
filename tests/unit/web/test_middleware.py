"""The request body limit (413) by declared length and while a body of unknown length streams."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest

from service.web.middleware import EdgeMiddleware
from tests.unit.conftest import run_async

LIMIT = 10


def _run(method: str, headers: list[tuple[bytes, bytes]], chunks: list[bytes]) -> tuple[int, dict[str, Any], int]:
    """Send a request through the middleware to an app that reads the whole body; returns the
    status, the parsed response body and how many body bytes the app read."""
    read = 0
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal read
        while True:
            message = await receive()
            read += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": "/v1/recordings", "headers": headers}
    run_async(EdgeMiddleware(app, max_bytes=LIMIT)(scope, receive, send))
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body), read


def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_read():
    status, problem, read = _run("POST", [(b"content-length", b"11")], [b"x" * 11])
    assert (status, problem["type"], read) == (413, "/problems/payload-too-large", 0)
    assert str(LIMIT) in problem["detail"]


def test_a_declared_length_within_the_limit_passes():
    assert _run("POST", [(b"content-length", b"10")], [b"x" * 10]) == (200, {}, 10)


@pytest.mark.parametrize("headers", [[(b"transfer-encoding", b"chunked")], []], ids=["chunked", "post-without-length"])
def test_a_body_of_unknown_length_is_cut_off_once_it_passes_the_limit(headers):
    status, problem, _ = _run("POST", headers, [b"x" * 6, b"x" * 6])
    assert (status, problem["type"]) == (413, "/problems/payload-too-large")


def test_a_body_of_unknown_length_within_the_limit_passes():
    assert _run("PATCH", [(b"transfer-encoding", b"chunked")], [b"x" * 5, b"x" * 5]) == (200, {}, 10)


def test_an_unparsable_length_is_refused():
    status, _, read = _run("POST", [(b"content-length", b"ten")], [b"x"])
    assert (status, read) == (413, 0)


# The edge's other concerns, and how they meet the body limit -------------------------------------


def _edge_app(**options: Any) -> EdgeMiddleware:
    """The edge around an app that answers 200 with a JSON body of 2,000 bytes."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b'"' + b"a" * 1998 + b'"'})

    return EdgeMiddleware(app, max_bytes=LIMIT, **options)


def _call(edge: EdgeMiddleware, method: str, headers: list[tuple[bytes, bytes]], scheme: str = "http") -> list[dict]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": "/v1/recordings", "headers": headers, "scheme": scheme}
    run_async(edge(scope, receive, send))
    return sent


def _headers(sent: list[dict]) -> dict[bytes, bytes]:
    return dict(sent[0]["headers"])


def test_every_answer_carries_the_security_headers_and_hsts_only_over_https():
    edge = _edge_app()
    plain = _headers(_call(edge, "GET", []))
    refused = _call(edge, "POST", [(b"content-length", b"11")], scheme="https")
    assert plain[b"x-content-type-options"] == b"nosniff"
    assert plain[b"cache-control"] == b"no-store"
    assert b"strict-transport-security" not in plain
    assert refused[0]["status"] == 413
    assert _headers(refused)[b"x-frame-options"] == b"DENY"
    assert _headers(refused)[b"strict-transport-security"].startswith(b"max-age=")


def test_a_header_the_app_sets_itself_is_not_doubled():
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"cache-control", b"max-age=60")]})
        await send({"type": "http.response.body", "body": b""})

    sent = _call(EdgeMiddleware(app, max_bytes=LIMIT), "GET", [])
    assert [value for name, value in sent[0]["headers"] if name == b"cache-control"] == [b"max-age=60"]


def test_gzip_only_for_clients_that_accept_it():
    edge = _edge_app()
    plain = _call(edge, "GET", [])
    zipped = _call(edge, "GET", [(b"accept-encoding", b"br, gzip")])
    assert b"content-encoding" not in _headers(plain)
    assert _headers(zipped)[b"content-encoding"] == b"gzip"
    body = b"".join(m.get("body", b"") for m in zipped[1:])
    assert gzip.decompress(body) == b'"' + b"a" * 1998 + b'"'


def test_options_is_answered_here_only_when_routes_are_given():
    from fastapi import APIRouter

    router = APIRouter()
    router.add_api_route("/v1/recordings", lambda: None, methods=["GET", "POST"])
    edge = _edge_app(options_routes=router.routes)
    answered = _call(edge, "OPTIONS", [])
    assert (answered[0]["status"], _headers(answered)[b"allow"]) == (204, b"GET, POST, OPTIONS")
    assert _headers(answered)[b"x-content-type-options"] == b"nosniff"
    passed_on = _edge_app()
    assert _call(passed_on, "OPTIONS", [])[0]["status"] == 200  # the app's own answer


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def started(self, method: str) -> None:
        self.calls.append(("started", method))

    def finished(self, scope: dict, root_path: str, status: int, seconds: float) -> None:
        self.calls.append(("finished", scope["method"], status, seconds >= 0))


def test_metrics_see_every_request_with_the_status_sent_including_refusals_and_failures():
    recorder = _Recorder()
    edge = _edge_app(metrics=recorder)
    _call(edge, "GET", [])
    _call(edge, "PUT", [(b"content-length", b"99")])

    async def failing(scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        _call(EdgeMiddleware(failing, max_bytes=LIMIT, metrics=recorder), "GET", [])
    assert recorder.calls == [
        ("started", "GET"),
        ("finished", "GET", 200, True),
        ("started", "PUT"),
        ("finished", "PUT", 413, True),
        ("started", "GET"),
        ("finished", "GET", 500, True),
    ]
