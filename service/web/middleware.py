"""The app's one pure ASGI middleware, at its edge: request metrics, security headers on every
response, the request body limit (413), gzip for clients that accept it, and ``OPTIONS``.

One layer instead of five: each layer is a coroutine frame per request and a ``send`` wrapper
per response message, and the headers are scanned once here rather than once per concern.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.web.errors import problem_response
from service.web.methods import OptionsMiddleware

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from service.observability.metrics.http import RequestMetrics

SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
)
HSTS = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class _BodyTooLarge(Exception):
    pass


def with_security_headers(headers: Sequence[tuple[bytes, bytes]], https: bool) -> list[tuple[bytes, bytes]]:
    """``headers`` plus each security header the response does not set itself (HSTS over HTTPS)."""
    present = {name.lower() for name, _ in headers}
    out = [*headers, *(h for h in SECURITY_HEADERS if h[0] not in present)]
    if https:
        out.append(HSTS)
    return out


class EdgeMiddleware:
    """Everything the app does around every request, in one layer.

    - ``metrics``: count and time the request by route template (``None``: metrics are off).
    - Security headers on every response, including the 413s and ``OPTIONS`` answers made here.
    - Request bodies over ``max_bytes`` get 413: by the declared length before the app runs, or
      while a body of unknown length (chunked, or a POST/PUT/PATCH without a length) streams.
      A body of a declared length within the limit is passed through untouched (the HTTP
      server reads exactly that many bytes).
    - gzip (responses of ``gzip_minimum_size`` bytes or more) only for clients that send
      ``Accept-Encoding: gzip``: Starlette's gzip middleware wraps every response it sees in a
      responder object, which API clients that never ask for gzip would pay for.
    - ``OPTIONS`` for a known path: 204 with its ``Allow`` header (``options_routes``; ``None``
      where a CORS middleware inside answers preflights and ``OptionsMiddleware`` sits inside it).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        metrics: RequestMetrics | None = None,
        gzip_minimum_size: int = 1024,
        options_routes: Sequence[BaseRoute] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.metrics = metrics
        self.gzip = GZipMiddleware(app, minimum_size=gzip_minimum_size)
        self.options = OptionsMiddleware(app, routes=options_routes) if options_routes is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        declared: int | None = None
        chunked = gzip = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = self.max_bytes + 1
            elif name == b"transfer-encoding":
                chunked = True
            elif name == b"accept-encoding":
                gzip = b"gzip" in value
        https = scope.get("scheme") == "https"
        status = 500  # an exception escaping before the response starts becomes a 500 upstream
        started = False

        async def send_edge(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
                message["headers"] = with_security_headers(message.get("headers", ()), https)
            await send(message)

        inner = self.options if method == "OPTIONS" and self.options is not None else self.gzip if gzip else self.app
        metrics = self.metrics
        root_path = scope.get("root_path", "")
        if metrics is not None:
            metrics.started(method)
        begun = time.perf_counter()
        try:
            if declared is not None and declared > self.max_bytes:
                await self._reject(scope, receive, send_edge)
            elif not chunked and (declared is not None or method not in _BODY_METHODS):
                await inner(scope, receive, send_edge)
            else:
                await self._counting(inner, scope, receive, send_edge, lambda: started)
        finally:
            if metrics is not None:
                metrics.finished(scope, root_path, status, time.perf_counter() - begun)

    async def _counting(
        self, inner: ASGIApp, scope: Scope, receive: Receive, send: Send, response_started: Callable[[], bool]
    ) -> None:
        """Run ``inner`` on a body of unknown length, cut off with 413 once it passes the limit."""
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge
            return message

        try:
            await inner(scope, limited_receive, send)
        except _BodyTooLarge:
            if not response_started():
                await self._reject(scope, receive, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(
            413,
            "payload-too-large",
            f"The request body exceeds the limit of {self.max_bytes} bytes.",
            instance=scope.get("path"),
        )
        await response(scope, receive, send)
