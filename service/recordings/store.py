"""The recordings table's statements, built once, and the one row type they return.

Every read and write of a recording goes through here as a Core statement: no ORM object is
loaded, tracked or refreshed on a request (docs/adr/0002-core-fast-paths-autocommit.md).

On PostgreSQL each statement is compiled once and run on the pooled connection's own psycopg2
cursor, which skips SQLAlchemy's execution context and result processing (a read by id: 66
instead of 112 microseconds of CPU, measured on one held connection). Errors still surface as
SQLAlchemy's ``DBAPIError`` family, and a lost connection is invalidated, exactly as
``Connection.execute`` does; SQLite (the local run) takes the ordinary Core path.

Writes that change a recording's state are conditional (``WHERE status = <expected>``) and return
the new row in the same round trip (``RETURNING``): whichever caller gets there first makes the
change, the others get ``None`` and read what it became.

The functions take a database session (a ``Connection``); the caller owns the transaction.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, and_, bindparam, func, insert, or_, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import Insert, Select, Update
from sqlalchemy.sql.schema import ColumnDefault

from service.core.db import begin_unless_single_statement
from service.recordings.models import Status, UploadMethod, recordings


class RecordingRow(NamedTuple):
    """One row of the recordings table, as every statement here returns it.

    A named tuple: immutable, and built from a driver's row in one call (a frozen dataclass
    sets its 21 fields one by one: about 5 times slower, paid for every row of every page).
    """

    id: uuid.UUID
    owner: str
    title: str | None
    filename: str
    content_type: str
    size_bytes: int | None
    checksum_sha256: str | None
    s3_key: str
    s3_version_id: str | None
    upload_method: UploadMethod
    upload_id: str | None
    part_size: int | None
    part_count: int | None
    status: Status
    metadata: dict[str, Any]
    failure_reason: str | None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    deleted_at: datetime | None
    swept_at: datetime | None


_table = recordings
_COLUMNS = tuple(_table.c[name] for name in RecordingRow._fields)
_ROWS = select(*_COLUMNS)
_DESC = (_table.c.created_at.desc(), _table.c.id.desc())


_METHOD = RecordingRow._fields.index("upload_method")
_STATUS = RecordingRow._fields.index("status")
# The enums by their stored text: a dictionary lookup, where calling the enum class walks its
# lookup machinery for every row.
_METHODS = {member.value: member for member in UploadMethod}
_STATUSES = {member.value: member for member in Status}


def _from_driver(row: Sequence[Any]) -> RecordingRow:
    """A row as psycopg2 returns it (the enums as their text; UUIDs, JSON and timestamps already
    converted by the driver, as SQLAlchemy's psycopg2 dialect registers them)."""
    values = list(row)
    values[_METHOD] = _METHODS[values[_METHOD]]
    values[_STATUS] = _STATUSES[values[_STATUS]]
    return RecordingRow._make(values)


class _Prebuilt:
    """A statement built once, and its PostgreSQL SQL compiled once per set of parameter names
    (an UPDATE or INSERT sets exactly the columns it is given), with the values of the literals
    the statement binds itself (``status != 'deleted'``)."""

    __slots__ = ("_compiled", "statement")

    def __init__(self, statement: Select[Any] | Insert | Update) -> None:
        self.statement = statement
        self._compiled: dict[frozenset[str], tuple[str, dict[str, Any]]] = {}

    def sql(self, connection: Connection, keys: Collection[str]) -> tuple[str, dict[str, Any]]:
        key = frozenset(keys)
        found = self._compiled.get(key)
        if found is None:
            compiled = self.statement.compile(dialect=connection.dialect, column_keys=list(keys))
            own = {name: value for name, value in compiled.params.items() if name not in key}
            found = self._compiled[key] = (compiled.string, own)
        return found


def _driver_params(params: dict[str, Any]) -> dict[str, Any]:
    if "metadata" in params:  # JSON text, which PostgreSQL takes for the jsonb column
        return {**params, "metadata": json.dumps(params["metadata"])}
    return params


def _fetch(
    connection: Connection, prebuilt: _Prebuilt, params: dict[str, Any], *, returns: bool = True
) -> list[RecordingRow]:
    """Run ``prebuilt`` with ``params``; the rows it returns (none read when not ``returns``)."""
    if connection.dialect.name != "postgresql":
        result = connection.execute(prebuilt.statement, params)
        return [RecordingRow._make(row) for row in result] if returns else []
    # What Connection.execute would do first: begin the session's transaction.
    begin_unless_single_statement(connection)
    dbapi_connection = connection.connection.dbapi_connection
    if dbapi_connection is None:  # only an invalidated connection has none
        raise RuntimeError("the connection has no DBAPI connection")
    sql, own = prebuilt.sql(connection, params)
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(sql, _driver_params({**own, **params}))
        return [_from_driver(row) for row in cursor.fetchall()] if returns else []
    except connection.dialect.loaded_dbapi.Error as exc:
        lost = connection.dialect.is_disconnect(exc, dbapi_connection, cursor)
        if lost:
            connection.invalidate(exc)
        raise DBAPIError.instance(
            sql,
            params,
            exc,
            connection.dialect.loaded_dbapi.Error,
            connection_invalidated=lost,
            dialect=connection.dialect,
        ) from exc
    finally:
        cursor.close()


def _fetch_one(db: Connection, prebuilt: _Prebuilt, params: dict[str, Any]) -> RecordingRow | None:
    rows = _fetch(db, prebuilt, params)
    return rows[0] if rows else None


_OWNED_STATEMENT = _ROWS.where(_table.c.id == bindparam("recording_id"), _table.c.owner == bindparam("owner"))
_OWNED = _Prebuilt(_OWNED_STATEMENT)
_OWNED_LOCKED = _Prebuilt(_OWNED_STATEMENT.with_for_update())
_AT_KEY_STATEMENT = _ROWS.where(_table.c.s3_key == bindparam("key"))
_AT_KEY = _Prebuilt(_AT_KEY_STATEMENT)
_OWNED_AT_KEY = _Prebuilt(_AT_KEY_STATEMENT.where(_table.c.owner == bindparam("owner")))


def owned(db: Connection, *, tenant: str, recording_id: uuid.UUID, lock: bool = False) -> RecordingRow | None:
    """The tenant's recording (another tenant's is the same as none). ``lock``: ``FOR UPDATE``,
    held until the transaction ends (PostgreSQL; SQLite serializes writers anyway)."""
    return _fetch_one(db, _OWNED_LOCKED if lock else _OWNED, {"recording_id": recording_id, "owner": tenant})


def at_key(db: Connection, *, key: str, tenant: str | None = None) -> RecordingRow | None:
    """The recording stored at ``key`` (keys are unique), optionally only the tenant's."""
    if tenant is None:
        return _fetch_one(db, _AT_KEY, {"key": key})
    return _fetch_one(db, _OWNED_AT_KEY, {"key": key, "owner": tenant})


_INSERT = _Prebuilt(insert(_table))
_NULLS = dict.fromkeys(RecordingRow._fields)


def insert_row(db: Connection, values: dict[str, Any]) -> RecordingRow:
    """Insert a recording from the given columns; the others take the table's Python-side
    defaults, or NULL. The row as stored is known without reading it back: the table has no
    server-side defaults (tests/api/test_store_rows.py holds it to that), so no
    ``RETURNING``, whose 21 columns the driver would parse for nothing."""
    stored = _with_defaults(values)
    _fetch(db, _INSERT, stored, returns=False)
    return RecordingRow(**{**_NULLS, **stored})


# The table's Python-side column defaults, read once.
_DEFAULTS = tuple((c.key, c.default.arg) for c in _table.c if isinstance(c.default, ColumnDefault))


def _with_defaults(values: dict[str, Any]) -> dict[str, Any]:
    """The values with the Python-side defaults of the columns not given (the driver path
    sends exactly what it is given; Core applies these itself)."""
    missing = {key: arg(None) if callable(arg) else arg for key, arg in _DEFAULTS if key not in values}
    return {**missing, **values}


# Keyset pages, newest first: four shapes (status filter or not deleted, first page or after a
# cursor), each built once.
_AFTER = or_(
    _table.c.created_at < bindparam("after_created"),
    and_(_table.c.created_at == bindparam("after_created"), _table.c.id < bindparam("after_id")),
)


def _page_statement(*, filtered: bool, after: bool) -> Any:
    statement = _ROWS.where(
        _table.c.owner == bindparam("owner"),
        _table.c.status == bindparam("status") if filtered else _table.c.status != Status.DELETED,
    )
    if after:
        statement = statement.where(_AFTER)
    return statement.order_by(*_DESC).limit(bindparam("limit"))


_PAGES = {
    (filtered, after): _Prebuilt(_page_statement(filtered=filtered, after=after))
    for filtered in (False, True)
    for after in (False, True)
}


def page(
    db: Connection,
    *,
    tenant: str,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None = None,
    status: Status | None = None,
) -> list[RecordingRow]:
    """Up to ``limit`` of the tenant's recordings, newest first, after the keyset position
    ``after``; deleted ones only when ``status`` asks for them."""
    params: dict[str, Any] = {"owner": tenant, "limit": limit}
    if status is not None:
        params["status"] = status
    if after is not None:
        params["after_created"], params["after_id"] = after
    return _fetch(db, _PAGES[status is not None, after is not None], params)


_OPEN_UPLOADS = select(func.count()).select_from(
    select(_table.c.id)
    .where(_table.c.owner == bindparam("owner"), _table.c.status == Status.PENDING)
    .limit(bindparam("cap"))
    .subquery()
)


def count_open_uploads(db: Connection, *, tenant: str, cap: int) -> int:
    """The tenant's pending uploads, counted up to ``cap`` (the cost stays bounded)."""
    return int(db.execute(_OPEN_UPLOADS, {"owner": tenant, "cap": cap}).scalar_one())


# Changes: SET columns come from the parameters' keys; the WHERE clause from the "_"-prefixed ones.
_TRANSITION = _Prebuilt(
    update(_table)
    .where(_table.c.id == bindparam("_id"), _table.c.status == bindparam("_expected"))
    .returning(*_COLUMNS)
)
_CHANGE = _Prebuilt(update(_table).where(_table.c.id == bindparam("_id")).returning(*_COLUMNS))


def transition(db: Connection, *, recording_id: uuid.UUID, expected: Status, **values: Any) -> RecordingRow | None:
    """Change the recording only while it is still ``expected``: the new row, or None when
    another caller changed it first."""
    return _fetch_one(db, _TRANSITION, {"_id": recording_id, "_expected": expected, **values})


def change(db: Connection, *, recording_id: uuid.UUID, **values: Any) -> RecordingRow | None:
    """Change the recording whatever its state: the new row (None when it does not exist)."""
    return _fetch_one(db, _CHANGE, {"_id": recording_id, **values})


_STALE = _Prebuilt(
    _ROWS.where(_table.c.status == Status.PENDING, _table.c.created_at < bindparam("cutoff"))
    .order_by(_table.c.created_at)
    .limit(bindparam("limit"))
)
_UNSWEPT = _Prebuilt(
    _ROWS.where(
        _table.c.swept_at.is_(None), _table.c.status != Status.PENDING, _table.c.created_at < bindparam("cutoff")
    )
    .order_by(_table.c.created_at)
    .limit(bindparam("limit"))
)


def stale_uploads(db: Connection, *, created_before: datetime, limit: int) -> list[RecordingRow]:
    """Pending uploads created before ``created_before``, oldest first (the reaper's batch)."""
    return _fetch(db, _STALE, {"cutoff": created_before, "limit": limit})


def unswept_settled(db: Connection, *, created_before: datetime, limit: int) -> list[RecordingRow]:
    """Settled recordings whose key was not swept yet, created before ``created_before``."""
    return _fetch(db, _UNSWEPT, {"cutoff": created_before, "limit": limit})
