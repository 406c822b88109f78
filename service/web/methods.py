"""Which methods a path supports: ``OPTIONS`` answers and every 405's ``Allow`` header.

Starlette answers ``OPTIONS`` with 405 and puts in a 405's ``Allow`` only the methods of the
first route whose path matched. HTTP (RFC 9110, sections 9.3.7 and 15.5.6) wants the methods of
the target resource: the union over every route of that path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi.routing import iter_route_contexts
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

_ORDER = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def _literal_segments(route: Any) -> int:
    return sum(1 for segment in route.path.split("/") if segment and not segment.startswith("{"))


def allowed_methods(routes: Sequence[BaseRoute], scope: Scope) -> list[str]:
    """The methods of the resource ``scope`` targets, or [] when no route has its path.

    Where two templates match (``/multipart/{id}/complete`` and ``/multipart/{id}/{part}``), the
    one with more literal segments names the resource, as it does when routing.
    """
    probe = dict(scope, method="OPTIONS")
    matching: list[Any] = []
    # Routers included with include_router stay one route each: iterate their routes (with prefix).
    for route in iter_route_contexts(routes):
        if not getattr(route, "methods", None):
            continue  # mounts (static files) answer for themselves
        match, _ = route.matches(probe)
        if match in (Match.FULL, Match.PARTIAL):
            matching.append(route)
    if not matching:
        return []
    best = max(_literal_segments(route) for route in matching)
    methods = {"OPTIONS"}
    for route in matching:
        if _literal_segments(route) == best:
            methods.update(route.methods)
    return [m for m in _ORDER if m in methods] + sorted(methods - set(_ORDER))


class OptionsMiddleware:
    """Answer ``OPTIONS`` for every known path with 204 and its ``Allow`` header.

    Installed inside the CORS middleware, so a CORS preflight (which carries ``Origin`` and
    ``Access-Control-Request-Method``) is answered there when CORS is configured.
    """

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "OPTIONS":
            methods = allowed_methods(self.routes, scope)
            if methods:
                await send(
                    {
                        "type": "http.response.start",
                        "status": 204,
                        "headers": [(b"allow", ", ".join(methods).encode()), (b"content-length", b"0")],
                    }
                )
                await send({"type": "http.response.body", "body": b""})
                return
        await self.app(scope, receive, send)
