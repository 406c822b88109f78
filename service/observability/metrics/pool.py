"""The SQLAlchemy pool's usage: size, overflow and connections checked out, per engine."""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, Gauge
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from service.observability.metrics.common import MULTIPROCESS

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

POOL_METRICS = {
    "db_pool_size": "Configured number of persistent connections in the SQLAlchemy pool",
    "db_pool_max_overflow": "Connections the pool may open beyond its size",
    "db_pool_checked_out": "Connections currently checked out of the pool",
    "db_pool_overflow": "Overflow connections currently open (negative while the pool fills)",
}


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
