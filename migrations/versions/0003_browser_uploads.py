"""browser uploads: undeclared sizes, credential-bound sessions, swept keys

Revision ID: 0003_browser_uploads
Revises: 0002_browser_sessions
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_browser_uploads"
down_revision: str | None = "0002_browser_sessions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("recordings") as batch:
        # A browser upload may leave the size undeclared: it is taken from the verified object.
        batch.alter_column("size_bytes", existing_type=sa.BigInteger(), nullable=True)
        # When the key was last cleared of bytes nothing tracks (after its upload form expired).
        batch.add_column(sa.Column("swept_at", TIMESTAMP, nullable=True))
    # Existing recordings count as swept: only new upload windows are watched.
    op.execute("UPDATE recordings SET swept_at = updated_at WHERE status <> 'pending'")
    op.create_index(
        "ix_recordings_unswept",
        "recordings",
        ["created_at"],
        postgresql_where=sa.text("swept_at IS NULL"),
        sqlite_where=sa.text("swept_at IS NULL"),
    )
    with op.batch_alter_table("browser_sessions") as batch:
        batch.add_column(sa.Column("api_key_id", sa.Uuid(), nullable=True))
        batch.create_index("ix_browser_sessions_api_key_id", ["api_key_id"])
    # Sessions made before they remembered their key cannot be bound to it: end them.
    op.execute("DELETE FROM browser_sessions")


def downgrade() -> None:
    with op.batch_alter_table("browser_sessions") as batch:
        batch.drop_index("ix_browser_sessions_api_key_id")
        batch.drop_column("api_key_id")
    op.drop_index("ix_recordings_unswept", table_name="recordings")
    op.execute("DELETE FROM recordings WHERE size_bytes IS NULL")
    with op.batch_alter_table("recordings") as batch:
        batch.drop_column("swept_at")
        batch.alter_column("size_bytes", existing_type=sa.BigInteger(), nullable=False)
