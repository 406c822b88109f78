"""Routers join the app as their routes, not as one nested route.

``include_router`` (FastAPI 0.165) keeps the included router as a single route of its own that
is matched through its own layer on every request (effective route contexts, a routes version
walk, a second match). A router built with its prefix, tags and responses already holds
complete routes (``APIRouter.add_api_route`` applies them when a route is declared), so the
routes can join the app's list directly. Nothing of the include call is lost: the service's
routers are included without any include-time option (prefix, dependencies, body size limits,
dependency overrides).
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI


def add_routes(app: FastAPI, router: APIRouter) -> None:
    """Append ``router``'s routes to ``app``'s, in their order."""
    for route in router.routes:
        app.router.routes.append(route)
