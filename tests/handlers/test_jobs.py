"""The scheduled reaper and the deploy-time migration (CloudFormation custom resource)."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, func, inspect, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from service.core.clock import utcnow
from service.core.db import session_scope
from service.recordings.models import recordings
from tests.api.uploading import create
from tests.conftest import BASE_DATABASE_URL, make_settings
from tests.transports import invoke, load_event


def test_scheduled_reaper_expires_stale_uploads(handler_settings, api, alice):
    from handlers.jobs import reap_handler

    stale, fresh = (create(api, alice, size=10)["recording"] for _ in range(2))
    with session_scope(handler_settings) as session:
        session.execute(
            update(recordings).where(recordings.c.id == stale["id"]).values(created_at=utcnow() - timedelta(days=2))
        )
        session.commit()

    counts = ("expired", "examined", "swept")
    first = invoke(reap_handler, load_event("eventbridge-scheduled.json"))
    # The expired upload's key is swept at once: its form expired long ago.
    assert {name: first[name] for name in counts} == {"expired": 1, "examined": 1, "swept": 1}
    again = invoke(reap_handler, load_event("eventbridge-scheduled.json"))
    assert {name: again[name] for name in counts} == {"expired": 0, "examined": 0, "swept": 0}
    with session_scope(handler_settings) as session:
        assert session.execute(select(recordings).where(recordings.c.id == stale["id"])).one().status == "expired"
        assert session.execute(select(recordings).where(recordings.c.id == fresh["id"])).one().status == "pending"


@pytest.fixture
def empty_database(s3_endpoint, monkeypatch):
    """A database with no tables at all, and the migration handler pointed at it."""
    import handlers.jobs
    from service.core.db import reset_engine
    from tests.pg_server import scratch_database

    with scratch_database(BASE_DATABASE_URL, "recordings_empty") as url:
        settings = make_settings(url, s3_endpoint, runtime="lambda")
        monkeypatch.setattr(handlers.jobs, "get_settings", lambda: settings)
        try:
            yield settings
        finally:
            reset_engine(settings)


def tables_and_revision(settings) -> tuple[set[str], str | None]:
    engine = create_engine(make_url(settings.database_url.get_secret_value()))
    try:
        with engine.connect() as connection:
            tables = set(inspect(connection).get_table_names())
            revision = None
            if "alembic_version" in tables:
                revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
        return tables, revision
    finally:
        engine.dispose()


def heads() -> set[str]:
    from alembic.script import ScriptDirectory

    from service.core.migrate import alembic_config

    return set(ScriptDirectory.from_config(alembic_config()).get_heads())


def test_create_migrates_an_empty_database_then_create_and_update_are_no_ops(empty_database):
    from handlers.jobs import migrate_handler

    assert tables_and_revision(empty_database) == (set(), None)

    created = invoke(migrate_handler, load_event("cfn-create.json"))

    tables, revision = tables_and_revision(empty_database)
    assert {"recordings", "api_keys", "alembic_version"} <= tables
    assert {revision} == heads()
    assert created == {"PhysicalResourceId": "recordings-database-schema", "Data": {"Revision": revision}}

    for again in ("cfn-create.json", "cfn-update.json"):
        # The same physical id: CloudFormation must not see a replacement (and delete the "old" one).
        assert invoke(migrate_handler, load_event(again))["PhysicalResourceId"] == "recordings-database-schema"
        assert tables_and_revision(empty_database) == (tables, revision)


def test_delete_leaves_the_database_alone(empty_database):
    from handlers.jobs import migrate_handler

    deleted = invoke(migrate_handler, load_event("cfn-delete.json"))
    assert deleted == {"PhysicalResourceId": "recordings-database-schema"}
    assert tables_and_revision(empty_database) == (set(), None)


def test_delete_needs_no_database(s3_endpoint, monkeypatch):
    import handlers.jobs

    unreachable = make_settings("postgresql://nobody@127.0.0.1:1/none", s3_endpoint, runtime="lambda")
    monkeypatch.setattr(handlers.jobs, "get_settings", lambda: unreachable)
    result = invoke(handlers.jobs.migrate_handler, load_event("cfn-delete.json"))
    assert result["PhysicalResourceId"] == "recordings-database-schema"


def test_failed_migration_raises_promptly_so_the_deployment_fails(s3_endpoint, monkeypatch):
    import handlers.jobs

    unreachable = make_settings("postgresql://nobody@127.0.0.1:1/none", s3_endpoint, runtime="lambda")
    monkeypatch.setattr(handlers.jobs, "get_settings", lambda: unreachable)
    started = time.monotonic()
    with pytest.raises(OperationalError, match=r"127\.0\.0\.1"):
        invoke(handlers.jobs.migrate_handler, load_event("cfn-create.json"))
    assert time.monotonic() - started < 10


def test_scheduled_reaper_removes_expired_browser_sessions(handler_settings, alice):
    from handlers.jobs import reap_handler
    from service.auth.principal import Principal
    from service.auth.session_models import browser_sessions
    from service.auth.sessions import start_session

    signed_in = Principal(tenant="alice", subject=alice.token.split("_")[1], method="jwt")
    with session_scope(handler_settings) as session:
        start_session(session=session, settings=handler_settings, principal=signed_in)
        session.execute(update(browser_sessions).values(expires_at=utcnow() - timedelta(seconds=1)))
        session.commit()

    assert invoke(reap_handler, load_event("eventbridge-scheduled.json"))["expired_sessions"] >= 1

    with session_scope(handler_settings) as session:
        expired = select(func.count()).select_from(browser_sessions).where(browser_sessions.c.expires_at < utcnow())
        assert session.execute(expired).scalar_one() == 0
