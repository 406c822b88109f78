"""Rendering the metrics for a scrape; with several workers, the samples of all live workers."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry, ProcessCollector, generate_latest, multiprocess
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from service.observability.metrics.common import MULTIPROC_ENV, MULTIPROCESS
from service.observability.metrics.pool import POOL_METRICS, refresh_pool_metrics

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
