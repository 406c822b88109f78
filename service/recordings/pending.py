"""The cap on a tenant's open (pending) uploads, counted in the database so that it holds across
processes. On PostgreSQL the count and the insert it admits run in one transaction under a
transaction-scoped advisory lock per tenant, so concurrent creates cannot all see room for one
more (the lock ends with the transaction, as PgBouncer's transaction pooling needs)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, text

from service.core.problems import TooManyRequests
from service.core.settings import Settings
from service.recordings import store

PENDING_RETRY_AFTER_SECONDS = 60

# pg_advisory_xact_lock(int, int): the first key names what is locked, the second the tenant.
_PENDING_LOCK_SPACE = 0x7265_6300  # "rec\0"
_LOCK_TENANT = text("SELECT pg_advisory_xact_lock(:space, hashtext(:tenant))")


@contextmanager
def pending_slot(connection: Connection, settings: Settings, tenant: str) -> Iterator[None]:
    """A transaction in which the tenant has room for one more pending upload: the caller inserts
    it, and the transaction commits when the block ends (rolled back on an exception).

    ``connection`` may be in DBAPI autocommit (``single_statement_connection``); it is switched
    to a transaction for the block, because the lock, the count and the insert must share one.
    """
    if settings.max_pending_uploads_per_tenant <= 0:
        yield
        connection.commit()
        return
    postgres = connection.dialect.name == "postgresql"
    dbapi_connection = connection.connection.dbapi_connection
    if dbapi_connection is None:  # only an invalidated connection has none
        raise RuntimeError("the connection has no DBAPI connection")
    autocommit = postgres and dbapi_connection.autocommit
    connection.commit()  # end whatever the connection did before (nothing is pending there)
    if autocommit:
        dbapi_connection.autocommit = False
    try:
        if postgres:
            connection.execute(_LOCK_TENANT, {"space": _PENDING_LOCK_SPACE, "tenant": tenant})
        enforce_pending_cap(connection, settings, tenant)
        yield
        connection.commit()
    except BaseException:
        connection.rollback()
        raise
    finally:
        if autocommit and not dbapi_connection.closed:
            dbapi_connection.autocommit = True


def enforce_pending_cap(connection: Connection, settings: Settings, tenant: str) -> None:
    """Refuse a new upload while the tenant already has the maximum number open (an early,
    unlocked check; ``pending_slot`` repeats it under the lock)."""
    cap = settings.max_pending_uploads_per_tenant
    if cap <= 0:
        return
    # Count at most `cap` rows: the cost stays bounded however many a tenant has open.
    pending = store.count_open_uploads(connection, tenant=tenant, cap=cap)
    if pending >= cap:
        raise TooManyRequests(
            f"This tenant already has {pending} uploads in progress (the limit is {cap}); complete or delete some.",
            retry_after=PENDING_RETRY_AFTER_SECONDS,
            slug="too-many-pending-uploads",
        )
