"""Engine, table metadata and database sessions. The pool is chosen per runtime: pooled on a
server, one connection kept per execution environment on Lambda (meant to sit behind RDS Proxy).

A database session here is a SQLAlchemy Core ``Connection`` ("commit as you go"): its first
statement begins a transaction, ``commit()`` ends it, and closing it rolls back whatever was not
committed. The tables are Core ``Table`` objects on ``metadata``; nothing imports SQLAlchemy's
ORM, which would add its import (about 60 ms of CPU) to every Lambda cold start.

Nothing here sends libpq startup ``options`` or session-level ``SET``: RDS Proxy refuses the
first and pins connections for the second. The statement timeout is a database setting that the
migration sets (service/core/migrate.py).
"""

from __future__ import annotations

import logging
import select
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

from sqlalchemy import Connection, CursorResult, MetaData, Result, create_engine, event
from sqlalchemy.engine import URL, Dialect, Engine, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection, PoolResetState

from service.core import signals
from service.core.settings import Settings

log = logging.getLogger("service.core.db")


# Every table of the service (service/models.py imports them all, for Alembic and the tests).
metadata = MetaData()


def database_url(settings: Settings) -> URL:
    """The URL to connect to: DATABASE_URL, or host settings plus the credentials in the secret."""
    if settings.database_secret_arn:
        from service.core.secrets import database_credentials

        creds = database_credentials(settings.database_secret_arn)
        # DATABASE_HOST wins over the secret's host: a secret attached to the instance names the
        # instance, while the Lambda functions must go through RDS Proxy.
        host: str | None
        port: int | None
        if settings.database_host:
            host, port = settings.database_host, settings.database_port
        else:
            host, port = creds.get("host"), int(creds.get("port") or settings.database_port)
        hosts = [h.strip() for h in str(host or "").split(",") if h.strip()]
        query: dict[str, list[str]] = {}
        if len(hosts) > 1:
            # Several replicas: libpq tries them in turn (load_balance_hosts=random in
            # _engine_options spreads the connections), so one replica down costs no error.
            query, host, port = {"host": [f"{h}:{port}" for h in hosts]}, None, None
        return URL.create(
            "postgresql+psycopg2",
            username=creds["username"],
            password=creds["password"],
            host=host,
            port=port,
            database=creds.get("dbname") or settings.database_name,
            query=query,
        )
    return with_driver(make_url(settings.database_url.get_secret_value()))


def owner_settings(settings: Settings) -> Settings:
    """The settings to run migrations with: the owner's credentials where they are configured
    apart from the application's, else ``settings`` itself."""
    if settings.database_migration_secret_arn:
        update: dict[str, Any] = {"database_secret_arn": settings.database_migration_secret_arn}
    elif settings.database_migration_url is not None:
        update = {"database_url": settings.database_migration_url, "database_secret_arn": None}
    else:
        return settings
    update.update(database_migration_secret_arn=None, database_migration_url=None)
    return settings.model_copy(update=update)


def with_driver(url: URL) -> URL:
    """Plain ``postgresql://`` URLs use psycopg2, the driver this service ships with."""
    if url.drivername in ("postgresql", "postgres"):
        return url.set(drivername="postgresql+psycopg2")
    return url


def _engine_options(url: URL, settings: Settings) -> dict[str, Any]:
    if url.get_backend_name() == "sqlite":
        return {"connect_args": {"check_same_thread": False, "timeout": 15}}
    connect_args: dict[str, Any] = {
        "connect_timeout": 5,
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
        "application_name": "recordings",
    }
    if settings.database_sslmode:
        connect_args["sslmode"] = settings.database_sslmode
    if settings.database_sslrootcert:
        connect_args["sslrootcert"] = settings.database_sslrootcert
    if isinstance(url.query.get("host"), tuple):
        connect_args["load_balance_hosts"] = "random"  # libpq 16+
    options: dict[str, Any] = {
        # No hstore columns: without this, every new connection asks the server for hstore's
        # type ids first (a round trip per connection, on every Lambda cold start).
        "use_native_hstore": False,
        # No ping per checkout by default (a round trip on every request): the checkout listener
        # (_drop_closed_connections) finds connections the server closed without one. Keepalives
        # find dead peers on idle connections.
        "pool_pre_ping": settings.db_pool_pre_ping,
        # Returned connections are rolled back only when in a transaction: see
        # _roll_back_only_open_transactions, which takes the pool's reset over.
        "pool_reset_on_return": None,
        "connect_args": connect_args,
    }
    # The pool also serves Lambda: an execution environment runs one invocation at a time and
    # keeps its connection (the deployment sizes it 1) for the next, as it keeps the engine. A
    # new connection per invocation would cost a TLS handshake and a login at RDS Proxy, every
    # time. A connection the proxy closed while the environment was frozen or idle is replaced
    # at checkout (_drop_closed_connections).
    options.update(
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_seconds,
        pool_recycle=1800,
    )
    return options


# DATABASE_URL, secret ARN, host, port, runtime, pool size, max overflow.
_SettingsKey = tuple[str, str | None, str | None, int, str, int, int]

_engines: dict[_SettingsKey, Engine] = {}
_lock = threading.Lock()


def _settings_key(settings: Settings) -> _SettingsKey:
    return (
        settings.database_url.get_secret_value(),
        settings.database_secret_arn,
        settings.database_host,
        settings.database_port,
        settings.runtime,
        settings.db_pool_size,
        settings.db_max_overflow,
    )


def _build_engine(settings: Settings) -> Engine:
    url = database_url(settings)
    engine = create_engine(url, **_engine_options(url, settings))
    if url.get_backend_name() == "sqlite":

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=15000")
            cursor.close()

    else:
        _drop_closed_connections(engine)
        _transactions_where_begun(engine)
        _roll_back_only_open_transactions(engine)
    if settings.database_secret_arn:
        _use_current_secret(engine, settings.database_secret_arn)
    signals.emit("db.engine_created", subject=engine)
    return engine


# Set in a pooled connection's info while single_statement_connection holds it.
_SINGLE_STATEMENT = "recordings.single_statement"


def _transactions_where_begun(engine: Engine) -> None:
    """A transaction begun on a connection that single_statement_connection left in DBAPI
    autocommit switches it back first, so that psycopg2 sends ``BEGIN`` (SQLAlchemy's psycopg2
    dialect begins nothing itself: the driver does, outside autocommit)."""

    @event.listens_for(engine, "begin")
    def _transactional(connection: Connection) -> None:
        dbapi_connection: Any = connection.connection.dbapi_connection
        if dbapi_connection is not None and dbapi_connection.autocommit and not connection.info.get(_SINGLE_STATEMENT):
            dbapi_connection.autocommit = False


def _roll_back_only_open_transactions(engine: Engine) -> None:
    """Reset a returned connection with ``ROLLBACK`` only when it is in a transaction.

    The pool's own reset (``pool_reset_on_return``, off for PostgreSQL in _engine_options)
    calls the driver's rollback on every return. On an idle or autocommit connection that sends
    nothing, but psycopg2 still gives up Python's GIL around it, and under load every such
    hand-over costs the other threads a wake-up. The driver knows the transaction status
    without a round trip; a broken connection (status unknown) is rolled back, fails, and the
    pool discards it, as before.
    """
    idle = engine.dialect.loaded_dbapi.extensions.TRANSACTION_STATUS_IDLE

    @event.listens_for(engine, "reset")
    def _rollback_if_in_transaction(dbapi_connection: Any, _record: ConnectionPoolEntry, state: PoolResetState) -> None:
        if state.terminate_only or dbapi_connection.closed:
            return
        if dbapi_connection.get_transaction_status() != idle:
            dbapi_connection.rollback()


_CLOSED_EVENTS = select.POLLIN | select.POLLERR | select.POLLHUP


def _drop_closed_connections(engine: Engine) -> None:
    """Never hand out a pooled connection that the server has closed.

    A failover, an RDS Proxy restart or a maintenance reboot closes every connection; the server
    says so (a FATAL message, then end of stream) while the connection sits idle in the pool.
    An idle connection has nothing to read, so a readable socket means it was closed or the
    server has something to say: only then does the checkout cost a round trip (``SELECT 1``),
    and when that fails the pool replaces the connection (``DisconnectionError``) before the
    request uses it. Checking the socket is one system call, not a round trip.
    """

    @event.listens_for(engine, "checkout")
    def _check_socket(dbapi_connection: Any, _record: ConnectionPoolEntry, _proxy: PoolProxiedConnection) -> None:
        # dbapi_connection: a psycopg2 connection (``closed`` and ``fileno()`` are beyond DB-API).
        if dbapi_connection.closed:
            raise DisconnectionError("the pooled connection was closed")
        poller = select.poll()
        poller.register(dbapi_connection.fileno(), _CLOSED_EVENTS)
        if not poller.poll(0):
            return
        try:
            with dbapi_connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            dbapi_connection.rollback()
        except engine.dialect.loaded_dbapi.Error as exc:
            signals.emit("db.stale_connection")
            raise DisconnectionError("the server closed the pooled connection") from exc


def _use_current_secret(engine: Engine, secret_arn: str) -> None:
    """Connect with the secret's current credentials, and survive a rotation.

    Every new connection reads the (cached) secret, so a rotation reaches the pool without a
    restart. When the database rejects the cached credentials, the secret is fetched again once,
    bypassing the cache, and the connection retried: a second rejection is a real error.
    """
    from service.core import secrets as secret_store

    def credentials(refresh: bool) -> dict[str, str]:
        secret = secret_store.database_credentials(secret_arn, refresh=refresh)
        return {"user": secret["username"], "password": secret["password"]}

    @event.listens_for(engine, "do_connect")
    def _connect_with_secret(
        dialect: Dialect, _record: ConnectionPoolEntry, cargs: list[Any], cparams: dict[str, Any]
    ) -> DBAPIConnection:
        try:
            return dialect.connect(*cargs, **{**cparams, **credentials(refresh=False)})
        except dialect.loaded_dbapi.OperationalError as exc:
            if not is_authentication_failure(exc):
                raise
            log.warning("the database rejected the secret's credentials; fetching the secret again")
        return dialect.connect(*cargs, **{**cparams, **credentials(refresh=True)})


def is_authentication_failure(exc: BaseException) -> bool:
    """A rejected login: a wrong password, or a user that a rotation (alternating users) replaced."""
    code: str | None = getattr(exc, "pgcode", None)
    if code:
        return code.startswith("28")  # class 28: invalid authorization specification
    # libpq reports failures while connecting as text only, without a SQLSTATE.
    message = str(exc)
    return "authentication failed" in message or ('role "' in message and "does not exist" in message)


def get_engine(settings: Settings) -> Engine:
    """One engine per process and configuration, created on first use and reused afterwards."""
    key = _settings_key(settings)
    engine = _engines.get(key)
    if engine is None:
        with _lock:
            engine = _engines.get(key)
            if engine is None:
                engine = _engines[key] = _build_engine(settings)
    return engine


def new_session(settings: Settings) -> Connection:
    """A database session for one unit of work, checked out of the engine's pool; use it as
    ``with new_session(settings) as session:`` and ``session.commit()`` what must persist."""
    return get_engine(settings).connect()


def reset_engine(settings: Settings) -> None:
    """Drop the cached engine (e.g. after database credentials rotated); the next use rebuilds it."""
    key = _settings_key(settings)
    with _lock:
        engine = _engines.pop(key, None)
    if engine is not None:
        engine.dispose()


def dispose_engines() -> None:
    with _lock:
        engines = list(_engines.values())
        _engines.clear()
    for engine in engines:
        engine.dispose()


@contextmanager
def single_statement_connection(settings: Settings) -> Iterator[Connection]:
    """A pooled connection for work that is one statement (a read by id, an insert).

    On PostgreSQL each statement commits on its own (DBAPI autocommit), which saves the
    ``BEGIN`` and the closing ``COMMIT``/``ROLLBACK``: one round trip instead of three. A single
    statement is atomic without a transaction around it. psycopg2 switches autocommit on the
    client alone, so switching costs no round trip (SQLAlchemy's ``isolation_level``
    execution option would send ``SET`` commands both ways).

    The connection stays in autocommit when it goes back to the pool, so a pool serving reads
    by id never switches at all; whoever begins a transaction on it later gets it transactional
    again (``_transactions_where_begun``). Statements run through ``connection.execute`` inside
    this block autocommit too, although SQLAlchemy counts them as a transaction.
    """
    with get_engine(settings).connect() as connection:
        dbapi_connection = connection.connection.dbapi_connection
        if connection.dialect.name != "postgresql":
            yield connection  # SQLite: an ordinary transaction; commit as usual
            return
        if dbapi_connection is None:  # only an invalidated connection has none
            raise RuntimeError("the checked-out connection has no DBAPI connection")
        if not dbapi_connection.autocommit:
            dbapi_connection.autocommit = True
        info = connection.info
        info[_SINGLE_STATEMENT] = True
        try:
            yield connection
        finally:
            info.pop(_SINGLE_STATEMENT, None)


def begin_unless_single_statement(connection: Connection) -> None:
    """Begin SQLAlchemy's transaction on a session, as ``Connection.execute`` does before its
    first statement, for code that runs statements on the DBAPI connection itself
    (service/recordings/store.py). Without it SQLAlchemy would know of no transaction:
    ``commit()`` would commit nothing, and a connection left in autocommit by
    ``single_statement_connection`` would stay in it. The ``begin`` event switches the driver
    out of autocommit (``_transactions_where_begun``). A single-statement connection is left as
    it is: each statement commits on its own."""
    if not connection.in_transaction() and not connection.info.get(_SINGLE_STATEMENT):
        connection.begin()


def rowcount(result: Result[*tuple[Any, ...]]) -> int:
    """The rows an UPDATE or DELETE matched. ``Connection.execute`` of a generic statement is
    typed to return a Result; for DML without RETURNING it is a CursorResult, which has
    ``rowcount``."""
    return cast("CursorResult[*tuple[Any, ...]]", result).rowcount


@contextmanager
def session_scope(settings: Settings) -> Iterator[Connection]:
    """A session for one unit of work outside a request (CLI, jobs); rolled back on error."""
    session = new_session(settings)
    try:
        yield session
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
