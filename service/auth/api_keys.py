"""API keys: ``rk_<prefix>_<secret>``. The prefix is public and finds the row; only a SHA-256 of
the high-entropy secret is stored, and it is compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from service.auth.models import ApiKey
from service.auth.principal import Principal, valid_tenant
from service.timeutil import as_utc, utcnow

KEY_SCHEME = "rk"
_LAST_USED_RESOLUTION = timedelta(minutes=1)
# A hash to compare against when the prefix is unknown, so both paths cost the same.
_DUMMY_HASH = hashlib.sha256(b"unknown-key").hexdigest()


@dataclass(frozen=True)
class NewApiKey:
    row: ApiKey
    token: str


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_api_key(session: Session, *, owner: str, name: str) -> NewApiKey:
    if not valid_tenant(owner):
        raise ValueError("owner must be 1-128 characters: letters, digits and . _ @ + -, starting alphanumeric")
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    row = ApiKey(owner=owner, name=name[:100], prefix=prefix, secret_hash=_hash(secret))
    session.add(row)
    session.commit()
    return NewApiKey(row=row, token=f"{KEY_SCHEME}_{prefix}_{secret}")


def list_api_keys(session: Session, *, owner: str | None = None) -> list[ApiKey]:
    statement = select(ApiKey).order_by(ApiKey.created_at)
    if owner:
        statement = statement.where(ApiKey.owner == owner)
    return list(session.scalars(statement))


def revoke_api_key(session: Session, *, prefix: str) -> bool:
    result = session.execute(
        update(ApiKey).where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None)).values(revoked_at=utcnow())
    )
    session.commit()
    return result.rowcount == 1


def looks_like_api_key(token: str) -> bool:
    return token.startswith(f"{KEY_SCHEME}_")


def authenticate_api_key(session: Session, token: str) -> Principal | None:
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_SCHEME or not parts[1] or not parts[2]:
        return None
    _, prefix, secret = parts
    row = session.execute(
        select(ApiKey.id, ApiKey.owner, ApiKey.secret_hash, ApiKey.revoked_at, ApiKey.last_used_at).where(
            ApiKey.prefix == prefix
        )
    ).first()
    matches = hmac.compare_digest(_hash(secret), row.secret_hash if row else _DUMMY_HASH)
    if row is None or not matches or row.revoked_at is not None:
        return None
    now = utcnow()
    last_used = as_utc(row.last_used_at)
    if last_used is None or now - last_used > _LAST_USED_RESOLUTION:
        # Coarse on purpose: one write per key per minute, not one per request.
        session.execute(update(ApiKey).where(ApiKey.id == row.id).values(last_used_at=now))
        session.commit()
    return Principal(tenant=row.owner, subject=f"api-key:{prefix}", method="api_key")
