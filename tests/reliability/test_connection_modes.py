"""Pooled connections between DBAPI autocommit (single statements) and transactions (sessions),
and what the pool does with a connection when it comes back."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg2.extensions as ext
import pytest
from sqlalchemy import select, text

from service.core.db import dispose_engines, get_engine, new_session, single_statement_connection
from service.core.settings import Settings
from service.recordings.models import recordings


@pytest.fixture
def one_connection(settings: Settings) -> Iterator[Settings]:
    """Settings whose pool holds a single connection, so each use below gets the same one."""
    yield settings.model_copy(update={"db_pool_size": 1, "db_max_overflow": 0})
    dispose_engines()


def _backend(connection) -> int:
    return connection.connection.dbapi_connection.info.backend_pid


def test_a_single_statement_connection_goes_back_in_autocommit_with_nothing_open(one_connection):
    with single_statement_connection(one_connection) as connection:
        connection.execute(text("SELECT 1"))  # through SQLAlchemy: it autocommits here too
        raw = connection.connection.dbapi_connection
        assert raw.autocommit is True
        assert raw.get_transaction_status() == ext.TRANSACTION_STATUS_IDLE
    assert raw.autocommit is True  # back in the pool without switching


def test_a_session_on_a_connection_left_in_autocommit_runs_in_a_transaction(one_connection):
    with single_statement_connection(one_connection) as connection:
        first = _backend(connection)
    with new_session(one_connection) as session:
        session.execute(select(recordings.c.id).limit(1))
        raw = session.connection.dbapi_connection
        assert _backend(session) == first  # the same physical connection
        assert raw.autocommit is False
        assert raw.get_transaction_status() == ext.TRANSACTION_STATUS_INTRANS
        # A transaction-scoped setting lasts until the transaction ends: proof of one transaction.
        session.execute(text("SELECT set_config('application_name', 'in-transaction', true)"))
        assert session.scalar(text("SELECT current_setting('application_name')")) == "in-transaction"
        session.rollback()
    with single_statement_connection(one_connection) as connection:
        assert connection.scalar(text("SELECT current_setting('application_name')")) == "recordings"


@pytest.mark.parametrize("committed", [False, True])
def test_a_session_whose_first_statement_bypasses_sqlalchemy_is_still_one_transaction(one_connection, committed):
    """The recordings store runs its statements on the driver's cursor, behind SQLAlchemy's back.
    As a session's first statement, on a connection left in autocommit, it must still begin the
    session's transaction: what was not committed is rolled back when the session closes, and
    ``commit()`` really commits."""
    import uuid

    from service.recordings import store
    from service.recordings.models import UploadMethod

    with single_statement_connection(one_connection) as connection:
        first = _backend(connection)
    recording_id = uuid.uuid4()
    with new_session(one_connection) as session:
        store.insert_row(
            session,
            {
                "id": recording_id,
                "owner": "modes",
                "filename": "take.wav",
                "content_type": "audio/wav",
                "s3_key": f"modes/{recording_id}",
                "upload_method": UploadMethod.POST,
            },
        )
        raw = session.connection.dbapi_connection
        assert _backend(session) == first  # the connection single statements left in autocommit
        assert raw.autocommit is False
        assert raw.get_transaction_status() == ext.TRANSACTION_STATUS_INTRANS
        if committed:
            session.commit()
    with single_statement_connection(one_connection) as connection:
        stored = connection.execute(select(recordings.c.id).where(recordings.c.id == recording_id)).all()
    assert len(stored) == (1 if committed else 0)


def test_a_connection_returned_inside_a_transaction_is_rolled_back(one_connection):
    engine = get_engine(one_connection)
    connection = engine.connect()
    raw = connection.connection.dbapi_connection
    raw.autocommit = False
    with raw.cursor() as cursor:  # a transaction the driver opened behind SQLAlchemy's back
        cursor.execute("SELECT 1")
    assert raw.get_transaction_status() == ext.TRANSACTION_STATUS_INTRANS
    connection.close()
    assert raw.get_transaction_status() == ext.TRANSACTION_STATUS_IDLE


def test_a_read_on_the_primary_runs_each_statement_alone(one_connection):
    """List, download and play on the primary: no BEGIN/ROLLBACK round trips around the read."""
    from service.recordings import store
    from service.web.read_routing import routed_read

    def work(db, on_replica):
        store.page(db, tenant="nobody", limit=5, after=None, status=None)
        raw = db.connection.dbapi_connection
        return on_replica, raw.autocommit, raw.get_transaction_status()

    assert routed_read(one_connection, work) == (False, True, ext.TRANSACTION_STATUS_IDLE)
