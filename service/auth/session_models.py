from __future__ import annotations

import uuid

from sqlalchemy import Column, DateTime, Index, String, Table, Uuid

from service.core.clock import utcnow
from service.core.db import metadata

# A signed-in browser. Only a SHA-256 of the cookie's token is stored, so a database leak yields
# no usable cookies, and deleting the row revokes the session at once.
browser_sessions = Table(
    "browser_sessions",
    metadata,
    Column("id", Uuid, primary_key=True, default=uuid.uuid4),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("owner", String(128), nullable=False),
    # Who signed in (e.g. "api-key:<prefix>" or the JWT subject), for audit.
    Column("subject", String(255), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, default=utcnow),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    # The API key the session was made with: revoking the key deletes its sessions. None for a
    # session made from a JWT, which instead ends no later than the token.
    Column("api_key_id", Uuid),
    Index("ix_browser_sessions_expires_at", "expires_at"),
    Index("ix_browser_sessions_api_key_id", "api_key_id"),
)
