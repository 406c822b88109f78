"""HTTP requests counted and timed by route template (ASGI middleware), and ``GET /metrics``."""

from __future__ import annotations

import hmac
import time
from typing import TYPE_CHECKING

from fastapi import Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram

from service.observability.metrics.common import MULTIPROCESS, Children
from service.observability.metrics.exposition import render_metrics
from service.observability.metrics.pool import refresh_pool_metrics

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from service.core.settings import Settings

METRICS_PATH = "/metrics"
UNMATCHED_ROUTE = "<unmatched>"
# Seconds. Dense between 100 ms and 1 s so that P50/P90/P99 near the 500 ms alert threshold are
# interpolated inside a narrow bucket; coarse at both ends.
LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5,
    0.55, 0.6, 0.7, 0.8, 0.9, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0,
)  # fmt: skip

REQUESTS = Counter(
    "http_requests_total",
    "HTTP requests answered, by method, route template and status code",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "http_request_duration_seconds",
    "Time from request start to the last response byte, by method and route template",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)
IN_FLIGHT = Gauge(
    "http_requests_in_progress",
    "HTTP requests being processed",
    ["method"],
    multiprocess_mode="livesum",
)


def _route_template(scope: Scope, root_path_before: str) -> str:
    route = scope.get("route")
    path_format = getattr(route, "path_format", None)
    if not path_format:
        return UNMATCHED_ROUTE
    # Inside a Mount the innermost route wins; its prefix is what the mount added to root_path.
    mount_prefix = scope.get("root_path", "")[len(root_path_before) :]
    return f"{mount_prefix}{path_format}" if mount_prefix else path_format


class PrometheusMiddleware:
    """Pure ASGI middleware: count, time and label requests by route template."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._in_flight: Children[str, Gauge] = Children(lambda method: IN_FLIGHT.labels(method=method))
        self._series: Children[tuple[str, str, int], tuple[Counter, Histogram]] = Children(
            lambda key: (
                REQUESTS.labels(method=key[0], route=key[1], status=str(key[2])),
                LATENCY.labels(method=key[0], route=key[1]),
            )
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        root_path_before = scope.get("root_path", "")
        status = 500  # an exception escaping before the response starts becomes a 500 upstream
        in_flight = self._in_flight[method]

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        in_flight.inc()
        start = time.perf_counter()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - start
            requests, latency = self._series[method, _route_template(scope, root_path_before), status]
            requests.inc()
            latency.observe(elapsed)
            in_flight.dec()
            if MULTIPROCESS:
                refresh_pool_metrics()


def _authorized(header: str | None, token: str) -> bool:
    if not header:
        return False
    scheme, _, credentials = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(credentials.strip().encode(), token.encode())


def metrics_token(settings: Settings) -> str | None:
    """The bearer token /metrics requires: METRICS_TOKEN, or the secret METRICS_TOKEN_SECRET_ARN
    names (fetched on first use and cached; a rotated value is picked up within minutes)."""
    if settings.metrics_token:
        return settings.metrics_token.get_secret_value()
    if settings.metrics_token_secret_arn:
        from service.core.secrets import secret_string

        return secret_string(settings.metrics_token_secret_arn)
    return None


def install_metrics(app: FastAPI, settings: Settings) -> None:
    """Instrument ``app`` and add ``GET /metrics`` (nothing at all when metrics are disabled)."""
    if not settings.metrics_enabled:
        return
    app.add_middleware(PrometheusMiddleware)

    # Sync: in multiprocess mode rendering reads files, so it runs in the threadpool.
    def metrics_endpoint(request: Request) -> Response:
        token = metrics_token(settings)
        if token and not _authorized(request.headers.get("authorization"), token):
            return Response(
                status_code=401,
                content='{"title":"Unauthorized","status":401}',
                media_type="application/problem+json",
                headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
            )
        return Response(render_metrics(), media_type=CONTENT_TYPE_LATEST)

    app.add_api_route(METRICS_PATH, metrics_endpoint, methods=["GET"], include_in_schema=False)
