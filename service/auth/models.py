from __future__ import annotations

import uuid

from sqlalchemy import Column, DateTime, Index, String, Table, Uuid

from service.core.clock import utcnow
from service.core.db import metadata

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Uuid, primary_key=True, default=uuid.uuid4),
    Column("owner", String(128), nullable=False),
    Column("name", String(100), nullable=False),
    # The public part of the key, shown in listings and used to find the row.
    Column("prefix", String(32), nullable=False, unique=True),
    # SHA-256 of the secret part; the secret itself is never stored.
    Column("secret_hash", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, default=utcnow),
    Column("last_used_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
    Index("ix_api_keys_owner", "owner"),
)
