"""HTTP requests counted and timed by route template (reported by the edge middleware,
service/web/middleware.py), and ``GET /metrics``."""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from fastapi import Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram

from service.observability.metrics.common import MULTIPROCESS, Children
from service.observability.metrics.exposition import render_metrics
from service.observability.metrics.pool import refresh_pool_metrics

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.types import Scope

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


class RequestMetrics:
    """Counts and times requests by route template: the web layer's edge middleware calls
    ``started`` when a request comes in and ``finished`` once it is answered (or has failed)."""

    def __init__(self) -> None:
        self._in_flight: Children[str, Gauge] = Children(lambda method: IN_FLIGHT.labels(method=method))
        self._series: Children[tuple[str, str, int], tuple[Counter, Histogram, Gauge]] = Children(
            lambda key: (
                REQUESTS.labels(method=key[0], route=key[1], status=str(key[2])),
                LATENCY.labels(method=key[0], route=key[1]),
                self._in_flight[key[0]],
            )
        )

    def started(self, method: str) -> None:
        self._in_flight[method].inc()

    def finished(self, scope: Scope, root_path_before: str, status: int, seconds: float) -> None:
        """``scope`` after routing (its ``route``), the ``root_path`` it came in with, the status
        sent (500 when none was) and the time from the request to the last byte."""
        requests, latency, in_flight = self._series[scope["method"], _route_template(scope, root_path_before), status]
        requests.inc()
        latency.observe(seconds)
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


def install_metrics(app: FastAPI, settings: Settings) -> RequestMetrics | None:
    """Add ``GET /metrics`` to ``app``; the recorder its edge middleware reports requests to
    (``None``, and no route at all, when metrics are disabled)."""
    if not settings.metrics_enabled:
        return None

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
    return RequestMetrics()
