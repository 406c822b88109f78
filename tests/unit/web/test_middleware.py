"""The request body limit (413) by declared length and while a body of unknown length streams."""

from __future__ import annotations

import json
from typing import Any

import pytest

from service.web.middleware import BodyLimitMiddleware
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
    run_async(BodyLimitMiddleware(app, max_bytes=LIMIT)(scope, receive, send))
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
