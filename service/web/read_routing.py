"""Read routing: the list and download routes read from a read replica, everything else from the
primary.

A read goes to the replica only when the replica can answer it as the primary would, give or
take ``DATABASE_READ_MAX_LAG_SECONDS`` of replication lag:

* the replica's replay lag is measured on the replica, in the read's own transaction, before
  the read (no extra server, no cached value): more than the limit and the primary answers;
* a download that finds nothing, or a recording in a state that a recent write may have moved
  on (not yet available), and a list page holding an upload the read would verify, are answered
  by the primary instead: a download right after complete never fails on a lagging replica. A
  list may miss a change younger than the lag limit (README, "Which database answers");
* a replica that cannot be reached (or drops the connection mid-read) hands the read to the
  primary, and reads skip it for ``DATABASE_READ_RETRY_SECONDS`` so that no request waits for its
  connect timeout; a query the replica cancels (a conflict with recovery, the statement timeout)
  is answered by the primary, and the next read tries the replica again.

Every fallback is counted in ``db_read_fallbacks_total{reason}``, every routed read in
``db_reads_total{target}``. Readiness never checks the replica: the primary can serve every
read, so a replica outage degrades capacity, not availability.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Connection, text
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from service.core.db import new_session, single_statement_connection
from service.core.problems import NotFound
from service.core.settings import Settings
from service.observability.metrics import domain as domain_metrics

log = logging.getLogger("service.web.read_routing")
T = TypeVar("T")

# Seconds the replica's replay is behind the WAL it has received from the primary: 0 when it has
# replayed everything it received, otherwise the age of the last transaction it replayed (the
# same definition as the ReplicaLag metric of RDS). Unknown (nothing replayed yet) is infinite.
REPLAY_LAG = text(
    "SELECT CASE"
    " WHEN NOT pg_is_in_recovery() THEN 0"
    " WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0"
    " ELSE COALESCE(EXTRACT(EPOCH FROM clock_timestamp() - pg_last_xact_replay_timestamp()), 'Infinity')"
    " END"
)
UNREACHABLE = (OperationalError, InterfaceError, PoolTimeoutError)


class PrimaryNeeded(Exception):
    """Raised by a read's work when what the replica returned may be behind a recent write."""


def replica_settings(settings: Settings) -> Settings | None:
    """The settings that reach the read replica, or None when none is configured."""
    if settings.database_read_url is not None:
        update: dict[str, Any] = {
            "database_url": settings.database_read_url,
            "database_secret_arn": None,
            "database_host": None,
        }
    elif settings.database_read_host:
        update = {
            "database_host": settings.database_read_host,
            "database_port": settings.database_read_port or settings.database_port,
        }
    else:
        return None
    update.update(database_read_url=None, database_read_host=None, database_migration_url=None)
    return settings.model_copy(update=update)


_skip_until: dict[str, float] = {}
_lock = threading.Lock()


def _replica_id(replica: Settings) -> str:
    return f"{replica.database_url.get_secret_value()}|{replica.database_host}|{replica.database_port}"


def _skipping(replica: Settings) -> bool:
    return time.monotonic() < _skip_until.get(_replica_id(replica), 0.0)


def _skip(replica: Settings, seconds: float) -> None:
    with _lock:
        _skip_until[_replica_id(replica)] = time.monotonic() + seconds


def forget_failures() -> None:
    """Try the replica again on the next read (after an operator fixed it; tests)."""
    with _lock:
        _skip_until.clear()


def replay_lag_seconds(session: Connection) -> float:
    if session.dialect.name != "postgresql":
        return 0.0
    return float(session.execute(REPLAY_LAG).scalar_one())


def routed_read(settings: Settings, work: Callable[[Connection, bool], T]) -> T:
    """Run ``work(db, on_replica)`` on the replica when it may answer, else on the primary.

    ``work`` raises :class:`PrimaryNeeded` (or ``NotFound``) on the replica when the answer may
    be behind a recent write; it is then run again on the primary. On the primary it may write
    (read repair); on the replica it must not.
    """
    replica = replica_settings(settings)
    if replica is not None:
        reason = _try_replica(settings, replica, work)
        if not isinstance(reason, str):
            domain_metrics.record_read("replica")
            return reason[0]
        domain_metrics.record_read_fallback(reason)
    # On the primary every statement of a read stands alone (a page, a row; a repair is one
    # conditional UPDATE): no BEGIN and ROLLBACK around them, one round trip per statement, on
    # the connection itself (a transaction around it would only add BEGIN and ROLLBACK).
    with single_statement_connection(settings) as connection:
        result = work(connection, False)
    domain_metrics.record_read("primary")
    return result


def _try_replica(settings: Settings, replica: Settings, work: Callable[[Connection, bool], T]) -> tuple[T] | str:
    """``(result,)`` from the replica, or the reason it could not answer."""
    if _skipping(replica):
        return "unreachable"
    try:
        with new_session(replica) as session:
            lag = replay_lag_seconds(session)
            if lag > settings.database_read_max_lag_seconds:
                return "lagging"
            try:
                return (work(session, True),)
            except (PrimaryNeeded, NotFound):
                return "not_on_replica"
    except UNREACHABLE as exc:
        pgcode = getattr(getattr(exc, "orig", None), "pgcode", None)
        if pgcode:
            # The replica answered with an error: a query cancelled by a conflict with recovery
            # or by the statement timeout. This read goes to the primary; the next tries again.
            log.warning("read replica error (%s); this read goes to the primary", pgcode)
            return "replica_error"
        log.warning(
            "read replica unavailable (%s); reads go to the primary for %g s",
            type(exc).__name__,
            settings.database_read_retry_seconds,
        )
        _skip(replica, settings.database_read_retry_seconds)
        return "unreachable"
