"""The store builds an inserted row from what it sent (no RETURNING): that row must be exactly
what a read returns, which holds while the table computes nothing itself."""

from __future__ import annotations

import uuid

from sqlalchemy import text

from service.core.db import session_scope, single_statement_connection
from service.recordings import store
from service.recordings.models import Status, UploadMethod


def test_the_recordings_table_has_no_server_side_defaults(settings, owner_engine):
    with owner_engine.connect() as connection:
        computed = connection.execute(
            text(
                "SELECT column_name, column_default, is_generated FROM information_schema.columns "
                "WHERE table_name = 'recordings' AND (column_default IS NOT NULL OR is_generated <> 'NEVER')"
            )
        ).all()
        triggers = connection.execute(
            text("SELECT tgname FROM pg_trigger WHERE tgrelid = 'recordings'::regclass AND NOT tgisinternal")
        ).all()
    assert computed == []
    assert triggers == []


def test_an_inserted_row_is_the_row_read_back(settings):
    rid = uuid.uuid4()
    values = {
        "id": rid,
        "owner": "store-tenant",
        "title": None,
        "filename": "take.wav",
        "content_type": "audio/wav",
        "size_bytes": 123,
        "s3_key": f"store-tenant/{rid}",
        "upload_method": UploadMethod.POST,
        "metadata": {"z": [1, 2.5, {"k": None}], "a": "ünï"},
    }
    with single_statement_connection(settings) as connection:
        inserted = store.insert_row(connection, values)
    with session_scope(settings) as session:
        read = store.owned(session, tenant="store-tenant", recording_id=rid)
    assert read == inserted
    assert inserted.status is Status.PENDING
    assert inserted.created_at.utcoffset() is not None
