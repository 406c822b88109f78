from __future__ import annotations

import enum
import uuid

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Enum,
    Index,
    Integer,
    String,
    Table,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from service.core.clock import utcnow
from service.core.db import metadata


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


recordings = Table(
    "recordings",
    metadata,
    Column("id", Uuid, primary_key=True, default=uuid.uuid4),
    Column("owner", String(128), nullable=False),
    Column("title", String(200)),
    Column("filename", String(255), nullable=False),
    Column("content_type", String(255), nullable=False),
    # None while a browser upload that did not declare its size is pending; then the object's size.
    Column("size_bytes", BigInteger),
    Column("checksum_sha256", String(44)),
    Column("s3_key", String(512), nullable=False, unique=True),
    Column("s3_version_id", String(1024)),
    Column("upload_method", _stored_as_text(UploadMethod), nullable=False),
    Column("upload_id", String(1024)),
    Column("part_size", BigInteger),
    Column("part_count", Integer),
    Column("status", _stored_as_text(Status), nullable=False, default=Status.PENDING),
    Column("metadata", JSONType, nullable=False, default=dict),
    Column("failure_reason", String(500)),
    Column("created_at", DateTime(timezone=True), nullable=False, default=utcnow),
    Column("updated_at", DateTime(timezone=True), nullable=False, default=utcnow),
    Column("completed_at", DateTime(timezone=True)),
    Column("deleted_at", DateTime(timezone=True)),
    Column("swept_at", DateTime(timezone=True)),
    CheckConstraint("status IN ('pending', 'available', 'failed', 'expired', 'deleted')", name="ck_recordings_status"),
    CheckConstraint("size_bytes > 0", name="ck_recordings_size_positive"),
    CheckConstraint("upload_method IN ('POST', 'MULTIPART')", name="ck_recordings_upload_method"),
    # Keyset pagination per owner, newest first.
    Index("ix_recordings_owner_created_id", "owner", "created_at", "id"),
    # The reaper's scan of stale pending uploads.
    Index("ix_recordings_status_created", "status", "created_at"),
    # The reaper's scan of keys whose upload window closed and that were not swept yet. SQLite
    # (the local run) gets the same partial index from migration 0003; an ``sqlite_where`` here
    # would import SQLAlchemy's SQLite dialect on every start (about 7 ms), for a definition that
    # only Alembic's comparison reads, and it does not compare index predicates.
    Index(
        "ix_recordings_unswept",
        "created_at",
        postgresql_where=text("swept_at IS NULL"),
    ),
)
