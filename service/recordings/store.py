"""The recordings table's statements, built once, and the one row type they return.

Every read and write of a recording goes through here as a Core statement: no ORM object is
loaded, tracked or refreshed on a request (docs/adr/0002-core-statements-and-autocommit-reads.md).
Writes that change a recording's state are conditional (``WHERE status = <expected>``) and return
the new row in the same round trip (``RETURNING``): whichever caller gets there first makes the
change, the others get ``None`` and read what it became.

The functions take a ``Session`` or a ``Connection``; the caller owns the transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Row, Table, and_, bindparam, func, insert, or_, select, update
from sqlalchemy.orm import Session

from service.recordings.models import Recording, Status, UploadMethod

Executor = Session | Connection


@dataclass(frozen=True, slots=True)
class RecordingRow:
    """One row of the recordings table, as every statement here returns it."""

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


_table = cast(Table, Recording.__table__)
_COLUMNS = tuple(_table.c[field.name] for field in fields(RecordingRow))
_ROWS = select(*_COLUMNS)
_DESC = (_table.c.created_at.desc(), _table.c.id.desc())


# Positional construction from a row of _COLUMNS (same order as the fields): the fastest way in.
_from_columns = cast(Callable[..., RecordingRow], RecordingRow)


def _row(row: Row[Any] | None) -> RecordingRow | None:
    return None if row is None else _from_columns(*row)


_OWNED = _ROWS.where(_table.c.id == bindparam("recording_id"), _table.c.owner == bindparam("owner"))
_OWNED_LOCKED = _OWNED.with_for_update()
_AT_KEY = _ROWS.where(_table.c.s3_key == bindparam("key"))
_OWNED_AT_KEY = _AT_KEY.where(_table.c.owner == bindparam("owner"))


def owned(db: Executor, *, tenant: str, recording_id: uuid.UUID, lock: bool = False) -> RecordingRow | None:
    """The tenant's recording (another tenant's is the same as none). ``lock``: ``FOR UPDATE``,
    held until the transaction ends (PostgreSQL; SQLite serializes writers anyway)."""
    statement = _OWNED_LOCKED if lock else _OWNED
    return _row(db.execute(statement, {"recording_id": recording_id, "owner": tenant}).first())


def at_key(db: Executor, *, key: str, tenant: str | None = None) -> RecordingRow | None:
    """The recording stored at ``key`` (keys are unique), optionally only the tenant's."""
    if tenant is None:
        return _row(db.execute(_AT_KEY, {"key": key}).first())
    return _row(db.execute(_OWNED_AT_KEY, {"key": key, "owner": tenant}).first())


_INSERT = insert(_table).returning(*_COLUMNS)


def insert_row(db: Executor, values: dict[str, Any]) -> RecordingRow:
    """Insert a recording from the given columns (the others take the table's defaults)."""
    return _from_columns(*db.execute(_INSERT, values).one())


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
    (filtered, after): _page_statement(filtered=filtered, after=after)
    for filtered in (False, True)
    for after in (False, True)
}


def page(
    db: Executor,
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
    rows = db.execute(_PAGES[status is not None, after is not None], params)
    return [_from_columns(*row) for row in rows]


_OPEN_UPLOADS = select(func.count()).select_from(
    select(_table.c.id)
    .where(_table.c.owner == bindparam("owner"), _table.c.status == Status.PENDING)
    .limit(bindparam("cap"))
    .subquery()
)


def count_open_uploads(db: Executor, *, tenant: str, cap: int) -> int:
    """The tenant's pending uploads, counted up to ``cap`` (the cost stays bounded)."""
    return int(db.execute(_OPEN_UPLOADS, {"owner": tenant, "cap": cap}).scalar_one())


# Changes: SET columns come from the parameters' keys; the WHERE clause from the "_"-prefixed ones.
_TRANSITION = (
    update(_table)
    .where(_table.c.id == bindparam("_id"), _table.c.status == bindparam("_expected"))
    .returning(*_COLUMNS)
)
_CHANGE = update(_table).where(_table.c.id == bindparam("_id")).returning(*_COLUMNS)


def transition(db: Executor, *, recording_id: uuid.UUID, expected: Status, **values: Any) -> RecordingRow | None:
    """Change the recording only while it is still ``expected``: the new row, or None when
    another caller changed it first."""
    return _row(db.execute(_TRANSITION, {"_id": recording_id, "_expected": expected, **values}).first())


def change(db: Executor, *, recording_id: uuid.UUID, **values: Any) -> RecordingRow | None:
    """Change the recording whatever its state: the new row (None when it does not exist)."""
    return _row(db.execute(_CHANGE, {"_id": recording_id, **values}).first())


_STALE = (
    _ROWS.where(_table.c.status == Status.PENDING, _table.c.created_at < bindparam("cutoff"))
    .order_by(_table.c.created_at)
    .limit(bindparam("limit"))
)
_UNSWEPT = (
    _ROWS.where(
        _table.c.swept_at.is_(None), _table.c.status != Status.PENDING, _table.c.created_at < bindparam("cutoff")
    )
    .order_by(_table.c.created_at)
    .limit(bindparam("limit"))
)


def stale_uploads(db: Executor, *, created_before: datetime, limit: int) -> list[RecordingRow]:
    """Pending uploads created before ``created_before``, oldest first (the reaper's batch)."""
    return [_from_columns(*row) for row in db.execute(_STALE, {"cutoff": created_before, "limit": limit})]


def unswept_settled(db: Executor, *, created_before: datetime, limit: int) -> list[RecordingRow]:
    """Settled recordings whose key was not swept yet, created before ``created_before``."""
    return [_from_columns(*row) for row in db.execute(_UNSWEPT, {"cutoff": created_before, "limit": limit})]
