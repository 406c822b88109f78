from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import DateTime, Index, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from service.core.clock import utcnow
from service.core.db import Base


class BrowserSession(Base):
    """A signed-in browser. Only a SHA-256 of the cookie's token is stored, so a database leak
    yields no usable cookies, and deleting the row revokes the session at once."""

    __tablename__ = "browser_sessions"
    __table_args__ = (
        Index("ix_browser_sessions_expires_at", "expires_at"),
        Index("ix_browser_sessions_api_key_id", "api_key_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    owner: Mapped[str] = mapped_column(String(128), nullable=False)
    # Who signed in (e.g. "api-key:<prefix>" or the JWT subject), for audit.
    subject: Mapped[str] = mapped_column(String(255), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    # The API key the session was made with: revoking the key deletes its sessions. None for a
    # session made from a JWT, which instead ends no later than the token.
    api_key_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
