"""What the service did, counted: upload lifecycle transitions, failed S3 calls, stale pooled
connections and routed reads; and the signal bus's Prometheus listener (service.core.signals)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from prometheus_client import Counter

from service.core import signals
from service.core.signals import Signal
from service.core.storage import S3_ACTIONS, api_name
from service.observability.metrics.common import Children
from service.observability.metrics.pool import track_pool

logger = logging.getLogger(__name__)

UPLOAD_OUTCOMES = ("created", "completed", "failed", "expired", "deleted", "restored")
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


_upload_counters: Children[str, Counter] = Children(lambda outcome: UPLOADS.labels(outcome=outcome))
_storage_error_counters: Children[tuple[str, str], Counter] = Children(
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
