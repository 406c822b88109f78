"""Prometheus metrics for the server path.

Public API used by the rest of the service:
- ``install_metrics(app, settings)``: HTTP instrumentation and the ``/metrics`` route.
- ``record_upload(outcome)``: upload lifecycle counter (created, completed, failed, expired,
  deleted, restored).
- ``track_pool(engine)``: exposes the SQLAlchemy pool usage of an engine.
- ``record_storage_error(operation, outcome)``: failed S3 calls, ``rejected`` (permissions or
  configuration) or ``unavailable`` (retryable); ``declare_storage_operations`` exports zeros.

Several uvicorn workers: when ``PROMETHEUS_MULTIPROC_DIR`` is set (before prometheus_client is
imported, i.e. in the environment of the server process), every worker writes its samples to
that directory and ``/metrics`` aggregates them, whichever worker answers the scrape. The
directory must exist and be emptied before the workers start (``prepare_multiprocess_dir``).

The metric names below are a contract with ``ops/prometheus/alerts.yml`` and the Grafana
dashboard; the ops tests cross-check them.
"""

from __future__ import annotations

import hmac
import logging
import os
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from fastapi import Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from service.core import signals
from service.core.signals import Signal
from service.core.storage import S3_ACTIONS, api_name

if TYPE_CHECKING:
    from fastapi import FastAPI
    from sqlalchemy.engine import Engine
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from service.core.settings import Settings

logger = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# prometheus_client picks its value storage (memory or mmap files) when it is imported, from
# the same variable; reading it here once keeps this module consistent with that choice.
MULTIPROCESS = bool(os.environ.get(MULTIPROC_ENV))
if MULTIPROCESS:
    # Metric children below open their files at import; a missing directory would crash a worker.
    os.makedirs(os.environ[MULTIPROC_ENV], exist_ok=True)

METRICS_PATH = "/metrics"
UNMATCHED_ROUTE = "<unmatched>"
UPLOAD_OUTCOMES = ("created", "completed", "failed", "expired", "deleted", "restored")
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
UPLOADS = Counter("recordings_uploads_total", "Upload lifecycle transitions", ["outcome"])
for _outcome in UPLOAD_OUTCOMES:
    # Exported as 0 from the start so rate() works before the first transition.
    UPLOADS.labels(outcome=_outcome)

DB_STALE_CONNECTIONS = Counter(
    "db_stale_connections_total",
    "Pooled database connections found closed by the server at checkout and replaced",
)
STORAGE_OUTCOMES = ("rejected", "unavailable")
STORAGE_ERRORS = Counter(
    "recordings_storage_errors_total",
    "Failed S3 calls by S3 operation: rejected (permissions or configuration; answered 500) or "
    "unavailable (throttling, timeouts, 5xx; answered 503)",
    ["operation", "outcome"],
)

# Read routing (service/web/read_routing.py): which server answered each routed read, and why a read
# meant for the replica went to the primary.
READ_TARGETS = ("replica", "primary")
READ_FALLBACK_REASONS = ("unreachable", "replica_error", "lagging", "not_on_replica")
DB_READS = Counter("db_reads_total", "Routed reads (list, download) by the server that answered", ["target"])
DB_READ_FALLBACKS = Counter(
    "db_read_fallbacks_total",
    "Reads meant for the read replica that the primary answered, by reason",
    ["reason"],
)
for _target in READ_TARGETS:
    DB_READS.labels(target=_target)
for _reason in READ_FALLBACK_REASONS:
    DB_READ_FALLBACKS.labels(reason=_reason)

POOL_METRICS = {
    "db_pool_size": "Configured number of persistent connections in the SQLAlchemy pool",
    "db_pool_max_overflow": "Connections the pool may open beyond its size",
    "db_pool_checked_out": "Connections currently checked out of the pool",
    "db_pool_overflow": "Overflow connections currently open (negative while the pool fills)",
}

# Every metric name the service exports (for the dashboard and alert-rule tests).
EXPORTED_METRICS = frozenset(
    {
        "http_requests_total",
        "http_request_duration_seconds",
        "http_requests_in_progress",
        "recordings_uploads_total",
        "db_stale_connections_total",
        "db_reads_total",
        "db_read_fallbacks_total",
        "recordings_storage_errors_total",
        *POOL_METRICS,
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    }
)


def record_upload(outcome: str) -> None:
    if outcome not in UPLOAD_OUTCOMES:
        # Bounded label values; an unknown outcome is a bug, but metrics must never fail a request.
        logger.warning("unknown upload outcome %r counted as 'other'", outcome)
        outcome = "other"
    _upload_counters[outcome].inc()


def record_stale_connection() -> None:
    DB_STALE_CONNECTIONS.inc()


def record_read(target: str) -> None:
    DB_READS.labels(target=target).inc()


def record_read_fallback(reason: str) -> None:
    DB_READ_FALLBACKS.labels(reason=reason).inc()


_K = TypeVar("_K")
_V = TypeVar("_V")


class _Children(dict[_K, _V]):
    """Labelled children of a metric by label values, created on first use.

    ``labels()`` takes a lock and builds a key on every call; a dictionary lookup does neither.
    The label values are bounded (outcomes, methods x route templates x status codes).
    """

    def __init__(self, make: Callable[[_K], _V]) -> None:
        super().__init__()
        self._make = make

    def __missing__(self, key: _K) -> _V:
        child = self[key] = self._make(key)
        return child


_upload_counters: _Children[str, Counter] = _Children(lambda outcome: UPLOADS.labels(outcome=outcome))
_storage_error_counters: _Children[tuple[str, str], Counter] = _Children(
    lambda key: STORAGE_ERRORS.labels(operation=key[0], outcome=key[1])
)


def declare_storage_operations(operations: Iterable[str]) -> None:
    """Export every (operation, outcome) series as 0, so the first error is an increase."""
    for operation in operations:
        for outcome in STORAGE_OUTCOMES:
            _storage_error_counters[operation, outcome]


def record_storage_error(operation: str, outcome: str) -> None:
    # Operations come from the storage module's own table (or "other"): bounded label values.
    _storage_error_counters[operation, outcome].inc()


declare_storage_operations([*(api_name(op) for op in S3_ACTIONS), "other"])


def _count_signal(signal: Signal) -> None:
    """The Prometheus listener of the signal bus (the EMF one is service.observability.emf)."""
    kind, _, outcome = signal.name.partition(".")
    if kind == "upload":
        record_upload(outcome)
    elif kind == "storage":
        record_storage_error(signal.labels["operation"], outcome)
    elif signal.name == "db.stale_connection":
        record_stale_connection()
    elif signal.name == "db.engine_created":
        track_pool(signal.subject)  # type: ignore[arg-type]


signals.subscribe(_count_signal)


# --- database pool -------------------------------------------------------------------------


def _pool_label(engine: Engine) -> str:
    url = engine.url
    return f"{url.get_backend_name()}:{url.database or ''}"


def _pool_values(engine: Engine) -> dict[str, float] | None:
    from sqlalchemy.pool import QueuePool

    pool = engine.pool  # read each time: dispose() replaces the pool object
    if not isinstance(pool, QueuePool):
        return None  # NullPool/StaticPool/SingletonThreadPool have no size to report
    return {
        "db_pool_size": pool.size(),
        "db_pool_max_overflow": pool._max_overflow,  # no public accessor
        "db_pool_checked_out": pool.checkedout(),
        "db_pool_overflow": pool.overflow(),
    }


class PoolCollector(Collector):
    """Reads the pools of the tracked engines at scrape time (single-process mode)."""

    def __init__(self) -> None:
        self._engines: weakref.WeakSet[Engine] = weakref.WeakSet()

    def add(self, engine: Engine) -> None:
        self._engines.add(engine)

    def describe(self) -> Iterable[Metric]:
        return [GaugeMetricFamily(name, doc, labels=["pool"]) for name, doc in POOL_METRICS.items()]

    def collect(self) -> Iterator[Metric]:
        families = {name: GaugeMetricFamily(name, doc, labels=["pool"]) for name, doc in POOL_METRICS.items()}
        for engine in list(self._engines):
            values = _pool_values(engine)
            if values is None:
                continue
            for name, value in values.items():
                families[name].add_metric([_pool_label(engine)], value)
        yield from families.values()


_pool_collector = PoolCollector()
_pool_gauges: dict[str, Gauge] = {}
_tracked_multiprocess: weakref.WeakSet[Engine] = weakref.WeakSet()

if MULTIPROCESS:
    # Each worker writes its own pool state to the shared directory; the scrape sums live workers.
    _pool_gauges = {
        name: Gauge(name, doc, ["pool"], multiprocess_mode="livesum", registry=None)
        for name, doc in POOL_METRICS.items()
    }
else:
    REGISTRY.register(_pool_collector)


def _refresh_pool_gauges(engine: Engine) -> None:
    values = _pool_values(engine)
    if values is None:
        return
    label = _pool_label(engine)
    for name, value in values.items():
        _pool_gauges[name].labels(pool=label).set(value)


def refresh_pool_metrics() -> None:
    """Multiprocess mode: copy this worker's pool state into the shared files."""
    for engine in list(_tracked_multiprocess):
        _refresh_pool_gauges(engine)


def track_pool(engine: Engine) -> None:
    """Export the pool usage of ``engine``. Idempotent; engines without a QueuePool are ignored."""
    from sqlalchemy import event
    from sqlalchemy.pool import QueuePool

    if not isinstance(engine.pool, QueuePool):
        return
    if not MULTIPROCESS:
        _pool_collector.add(engine)
        return
    if engine in _tracked_multiprocess:
        return
    _tracked_multiprocess.add(engine)
    # Checkout is where usage grows; the middleware refreshes again after each request, once the
    # connection is back (the checkin event fires before the pool counts it as returned).
    event.listen(engine, "checkout", lambda *_: _refresh_pool_gauges(engine))
    _refresh_pool_gauges(engine)


# --- multiprocess exposition -----------------------------------------------------------------


def prepare_multiprocess_dir(path: str | os.PathLike[str] | None = None) -> Path | None:
    """Create the multiprocess directory and remove files of a previous server run.

    Call in the parent process before the workers start (``python -m service serve``).
    """
    raw = path or os.environ.get(MULTIPROC_ENV)
    if not raw:
        return None
    directory = Path(raw)
    directory.mkdir(parents=True, exist_ok=True)
    own = f"_{os.getpid()}.db"
    for stale in directory.glob("*.db"):
        if not stale.name.endswith(own):  # this process's files are already open
            stale.unlink()
    return directory


def _pids_in(directory: str) -> set[int]:
    pids = set()
    for entry in os.listdir(directory):
        stem, _, pid = entry.removesuffix(".db").rpartition("_")
        if entry.endswith(".db") and stem and pid.isdigit():
            pids.add(int(pid))
    return pids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class WorkersProcessCollector(Collector):
    """CPU and memory of every live worker, labelled by pid (multiprocess mode has no default
    process collector: each worker only knows itself)."""

    def __init__(self, directory: str) -> None:
        self._directory = directory

    def collect(self) -> Iterator[Metric]:
        pids = {pid for pid in _pids_in(self._directory) if _alive(pid)} | {os.getpid()}
        merged: dict[str, Metric] = {}
        for pid in sorted(pids):
            collector = ProcessCollector(pid=_constant(pid), registry=None)
            for family in collector.collect():
                target = merged.setdefault(family.name, Metric(family.name, family.documentation, family.type))
                for sample in family.samples:
                    target.add_sample(sample.name, {**sample.labels, "pid": str(pid)}, sample.value)
        yield from merged.values()


def _constant(pid: int) -> Callable[[], int]:
    return lambda: pid


def _multiprocess_registry(directory: str) -> CollectorRegistry:
    # Live-gauge files of workers that died (uvicorn restarts them) would otherwise be summed
    # forever; counters and histograms of dead workers are kept, as totals must not go down.
    for pid in _pids_in(directory):
        if not _alive(pid):
            multiprocess.mark_process_dead(pid, directory)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)
    registry.register(WorkersProcessCollector(directory))
    return registry


def render_metrics() -> bytes:
    """The exposition text of this process, or of all workers in multiprocess mode."""
    directory = os.environ.get(MULTIPROC_ENV)
    if MULTIPROCESS and directory:
        refresh_pool_metrics()
        return generate_latest(_multiprocess_registry(directory))
    return generate_latest(REGISTRY)


# --- HTTP instrumentation ----------------------------------------------------------------------


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
        self._in_flight: _Children[str, Gauge] = _Children(lambda method: IN_FLIGHT.labels(method=method))
        self._series: _Children[tuple[str, str, int], tuple[Counter, Histogram]] = _Children(
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
