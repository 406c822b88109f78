"""Run Alembic migrations programmatically (CLI, local run, deploy-time migration handler)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection

from service.config import Settings
from service.db import get_engine

ROOT = Path(__file__).resolve().parent.parent


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(settings: Settings, revision: str = "head") -> None:
    with get_engine(settings).begin() as connection:
        command.upgrade(alembic_config(connection), revision)


def downgrade(settings: Settings, revision: str) -> None:
    with get_engine(settings).begin() as connection:
        command.downgrade(alembic_config(connection), revision)


def current_revision(settings: Settings) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with get_engine(settings).connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
