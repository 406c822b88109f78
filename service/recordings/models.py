from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, CheckConstraint, DateTime, Enum, Index, Integer, String, Uuid, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from service.core.clock import utcnow
from service.core.db import Base


class Status(enum.StrEnum):
    PENDING = "pending"
    AVAILABLE = "available"
    FAILED = "failed"
    EXPIRED = "expired"
    DELETED = "deleted"


class UploadMethod(enum.StrEnum):
    POST = "POST"
    MULTIPART = "MULTIPART"


JSONType = JSON().with_variant(JSONB(), "postgresql")


def _stored_as_text(enum_type: type[enum.StrEnum]) -> Enum:
    """The enum's values in a VARCHAR(16) column (the table's CHECK constraints list them):
    rows load as enum members, and a value outside the enum is refused before it is sent."""
    return Enum(
        enum_type,
        native_enum=False,
        create_constraint=False,
        length=16,
        validate_strings=True,
        values_callable=lambda members: [member.value for member in members],
    )


class Recording(Base):
    __tablename__ = "recordings"
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'available', 'failed', 'expired', 'deleted')", name="ck_recordings_status"
        ),
        CheckConstraint("size_bytes > 0", name="ck_recordings_size_positive"),
        CheckConstraint("upload_method IN ('POST', 'MULTIPART')", name="ck_recordings_upload_method"),
        # Keyset pagination per owner, newest first.
        Index("ix_recordings_owner_created_id", "owner", "created_at", "id"),
        # The reaper's scan of stale pending uploads.
        Index("ix_recordings_status_created", "status", "created_at"),
        # The reaper's scan of keys whose upload window closed and that were not swept yet.
        Index(
            "ix_recordings_unswept",
            "created_at",
            postgresql_where=text("swept_at IS NULL"),
            sqlite_where=text("swept_at IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    owner: Mapped[str] = mapped_column(String(128), nullable=False)
    title: Mapped[str | None] = mapped_column(String(200))
    filename: Mapped[str] = mapped_column(String(255), nullable=False)
    content_type: Mapped[str] = mapped_column(String(255), nullable=False)
    # None while a browser upload that did not declare its size is pending; then the object's size.
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    checksum_sha256: Mapped[str | None] = mapped_column(String(44))
    s3_key: Mapped[str] = mapped_column(String(512), nullable=False, unique=True)
    s3_version_id: Mapped[str | None] = mapped_column(String(1024))
    upload_method: Mapped[UploadMethod] = mapped_column(_stored_as_text(UploadMethod), nullable=False)
    upload_id: Mapped[str | None] = mapped_column(String(1024))
    part_size: Mapped[int | None] = mapped_column(BigInteger)
    part_count: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[Status] = mapped_column(_stored_as_text(Status), nullable=False, default=Status.PENDING)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType, nullable=False, default=dict)
    failure_reason: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    swept_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
