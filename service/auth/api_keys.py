"""API keys: ``rk_<prefix>_<secret>``. The prefix is public and finds the row; only a SHA-256 of
the high-entropy secret is stored, and it is compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import Connection, bindparam, insert, select, update

from service.auth.models import api_keys as _keys
from service.auth.principal import Principal, valid_tenant
from service.core.clock import as_utc, utcnow

KEY_SCHEME = "rk"
# A verified key is trusted for this long without a database round trip; revocation in this
# process takes effect at once, in other processes within this time.
VERIFIED_CACHE_SECONDS = 30.0
_VERIFIED_CACHE_MAX = 10_000
_LAST_USED_RESOLUTION = timedelta(minutes=1)
# A hash to compare against when the prefix is unknown, so both paths cost the same.
_DUMMY_HASH = hashlib.sha256(b"unknown-key").hexdigest()


class ApiKeyRow(NamedTuple):
    """An API key as listings show it (everything but the secret's hash)."""

    id: uuid.UUID
    owner: str
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


_LISTED = tuple(_keys.c[name] for name in ApiKeyRow._fields)


@dataclass(frozen=True)
class NewApiKey:
    row: ApiKeyRow
    token: str


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_api_key(session: Connection, *, owner: str, name: str) -> NewApiKey:
    if not valid_tenant(owner):
        raise ValueError("owner must be 1-128 characters: letters, digits and . _ @ + -, starting alphanumeric")
    if owner.lower().startswith("jwt-"):
        raise ValueError("owner must not start with 'jwt-': that namespace belongs to JWT tenants")
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    row = ApiKeyRow(
        id=uuid.uuid4(),
        owner=owner,
        name=name[:100],
        prefix=prefix,
        created_at=utcnow(),
        last_used_at=None,
        revoked_at=None,
    )
    session.execute(insert(_keys).values(**row._asdict(), secret_hash=_hash(secret)))
    session.commit()
    return NewApiKey(row=row, token=f"{KEY_SCHEME}_{prefix}_{secret}")


def list_api_keys(session: Connection, *, owner: str | None = None) -> list[ApiKeyRow]:
    statement = select(*_LISTED).order_by(_keys.c.created_at)
    if owner:
        statement = statement.where(_keys.c.owner == owner)
    return [ApiKeyRow._make(row) for row in session.execute(statement)]


@dataclass(frozen=True)
class Revoked:
    sessions_ended: int


def revoke_api_key(session: Connection, *, prefix: str) -> Revoked | None:
    """Revoke the key and end the browser sessions made with it, in one transaction; None when
    no active key has this prefix. Other processes stop trusting the key within
    VERIFIED_CACHE_SECONDS; its sessions end everywhere at once (each request reads them)."""
    from service.auth.sessions import end_sessions_of_key

    key_id = session.execute(
        update(_keys)
        .where(_keys.c.prefix == prefix, _keys.c.revoked_at.is_(None))
        .values(revoked_at=utcnow())
        .returning(_keys.c.id)
    ).scalar()
    ended = end_sessions_of_key(session, key_id) if key_id is not None else 0
    session.commit()
    for digest, (principal, _) in list(_verified.items()):
        if principal.subject == f"api-key:{prefix}":
            _verified.pop(digest, None)
    return Revoked(sessions_ended=ended) if key_id is not None else None


def lock_active_key(session: Connection, principal: Principal) -> uuid.UUID | None:
    """The id of the API key behind ``principal`` if it is still active, read from the database
    (never the cache) and locked until the transaction ends, so a concurrent revoke waits for a
    session being made with it and then ends that session too."""
    prefix = principal.subject.removeprefix("api-key:")
    row = session.execute(
        select(_keys.c.id, _keys.c.revoked_at).where(_keys.c.prefix == prefix).with_for_update()
    ).first()
    if row is None or row.revoked_at is not None:
        return None
    key_id: uuid.UUID = row.id
    return key_id


# Verified keys, by SHA-256 of the whole token: digest -> (principal, monotonic expiry).
_verified: dict[str, tuple[Principal, float]] = {}


def cached_api_key(token: str) -> Principal | None:
    """The principal of a key verified within VERIFIED_CACHE_SECONDS, without any I/O."""
    entry = _verified.get(hashlib.sha256(token.encode()).hexdigest())
    if entry is None or entry[1] < time.monotonic():
        return None
    return entry[0]


def _remember(token: str, principal: Principal) -> None:
    if len(_verified) >= _VERIFIED_CACHE_MAX:
        _verified.clear()
    _verified[hashlib.sha256(token.encode()).hexdigest()] = (principal, time.monotonic() + VERIFIED_CACHE_SECONDS)


_KEY_START = f"{KEY_SCHEME}_"


def looks_like_api_key(token: str) -> bool:
    return token.startswith(_KEY_START)


# Core statements on the table (no ORM entity is loaded): on the request path they run as single
# autocommitted statements (service.core.db.single_statement_connection), one round trip each.
_FIND_KEY = select(_keys.c.id, _keys.c.owner, _keys.c.secret_hash, _keys.c.revoked_at, _keys.c.last_used_at).where(
    _keys.c.prefix == bindparam("prefix")
)
_TOUCH_KEY = update(_keys).where(_keys.c.id == bindparam("key_id")).values(last_used_at=bindparam("now"))


def authenticate_api_key(db: Connection, token: str) -> Principal | None:
    """The principal of an active key, remembered for VERIFIED_CACHE_SECONDS; None for any other
    token. Marks the key used (at most once a minute) and commits that on ``db``."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_SCHEME or not parts[1] or not parts[2]:
        return None
    _, prefix, secret = parts
    row = db.execute(_FIND_KEY, {"prefix": prefix}).first()
    matches = hmac.compare_digest(_hash(secret), row.secret_hash if row else _DUMMY_HASH)
    if row is None or not matches or row.revoked_at is not None:
        return None
    now = utcnow()
    last_used = as_utc(row.last_used_at)
    if last_used is None or now - last_used > _LAST_USED_RESOLUTION:
        # Coarse on purpose: one write per key per minute, not one per request.
        db.execute(_TOUCH_KEY, {"key_id": row.id, "now": now})
        db.commit()
    principal = Principal(tenant=row.owner, subject=f"api-key:{prefix}", method="api_key")
    _remember(token, principal)
    return principal
