"""The pending-upload cap under concurrency: creates racing for the last slots against the real
PostgreSQL, directly and through PgBouncer in transaction pooling mode (as RDS Proxy pools)."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from service.auth.principal import Principal
from service.core.db import session_scope, single_statement_connection
from service.core.problems import TooManyRequests
from service.core.storage import Storage
from service.recordings import service
from service.recordings.models import Status, recordings
from service.recordings.schemas import RecordingCreate
from tests.conftest import make_settings, through_pooler

CAP = 3
RACERS = 12


def _race(settings) -> Counter:
    storage = Storage.from_settings(settings)
    principal = Principal(tenant="racer", subject="test", method="api_key")
    data = RecordingCreate(filename="a.wav", content_type="audio/wav", size_bytes=10)
    start = threading.Barrier(RACERS)

    def create(_: int) -> str:
        start.wait()
        try:
            with single_statement_connection(settings) as connection:
                service.create_recording(
                    connection=connection, storage=storage, settings=settings, principal=principal, data=data
                )
        except TooManyRequests:
            return "refused"
        return "created"

    with ThreadPoolExecutor(max_workers=RACERS) as pool:
        return Counter(pool.map(create, range(RACERS)))


def _pending(settings) -> int:
    with session_scope(settings) as session:
        return session.scalar(
            select(func.count()).where(recordings.c.owner == "racer", recordings.c.status == Status.PENDING)
        )


@pytest.mark.parametrize("route", ["direct", "pgbouncer"])
def test_concurrent_creates_never_exceed_the_pending_cap(request, settings, route):
    """Through PgBouncer in transaction pooling (tests/pg_server.py: no startup options, nothing
    kept between transactions) the lock must be transaction-scoped to hold at all."""
    database = settings.database_url.get_secret_value()
    if route == "pgbouncer":
        database = through_pooler(settings, request.getfixturevalue("pooler")).database_url.get_secret_value()
    capped = make_settings(
        database,
        settings.s3_endpoint_url,
        s3_bucket=settings.s3_bucket,
        max_pending_uploads_per_tenant=CAP,
        db_pool_size=RACERS,
        db_max_overflow=0,
    )
    outcomes = _race(capped)
    assert outcomes == Counter(created=CAP, refused=RACERS - CAP)
    assert _pending(settings) == CAP
