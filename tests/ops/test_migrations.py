"""The migrations and the models agree, on PostgreSQL and on SQLite, and downgrade cleanly."""

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from service.core.migrate import alembic_config
from service.models import metadata
from tests.conftest import BASE_DATABASE_URL
from tests.pg_server import scratch_database


@pytest.fixture(params=["postgresql", "sqlite"])
def empty_engine(request, tmp_path):
    if request.param == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / 'm.db'}")
        yield engine
        engine.dispose()
        return
    with scratch_database(BASE_DATABASE_URL, "recordings_migr") as url:
        engine = create_engine(url)
        yield engine
        engine.dispose()


def _run(engine, action, revision):
    with engine.begin() as connection:
        getattr(command, action)(alembic_config(connection), revision)


def _diff(engine):
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, metadata)


def test_models_and_migrations_agree(empty_engine):
    _run(empty_engine, "upgrade", "head")
    assert _diff(empty_engine) == []


def test_downgrade_and_upgrade_round_trip(empty_engine):
    _run(empty_engine, "upgrade", "head")
    _run(empty_engine, "downgrade", "base")
    assert set(inspect(empty_engine).get_table_names()) <= {"alembic_version"}
    _run(empty_engine, "upgrade", "head")
    assert {"recordings", "api_keys"} <= set(inspect(empty_engine).get_table_names())
    assert _diff(empty_engine) == []
