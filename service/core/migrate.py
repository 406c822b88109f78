"""Run Alembic migrations programmatically (CLI, local run, deploy-time migration handler).

Migrations run as the owner of the schema (``DATABASE_MIGRATION_URL`` or
``DATABASE_MIGRATION_SECRET_ARN``; without either, the application's own credentials, as in a
local run). When the owner and the application are different users, the migration also keeps
the application role as it must be: able to log in with the password in its secret, to read and
write the service's rows, and nothing else (no DDL, no changes to the schema version).

The statement timeout is set on the database (``ALTER DATABASE ... SET statement_timeout``), so
every new session starts with it, through RDS Proxy or PgBouncer, without a startup option (the
proxy refuses those) or a session ``SET`` (which would pin the proxy's connection). It is a
database setting rather than a role setting so that the user a multi-user secret rotation
creates (``<name>_clone``) gets it too. The migration itself runs without a timeout.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection

from service.core.db import database_url, get_engine, owner_settings
from service.core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
# The schema version table is the migration's own: the application may only read it.
VERSION_TABLE = "alembic_version"


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(settings: Settings, revision: str = "head") -> None:
    owner = owner_settings(settings)
    with get_engine(owner).begin() as connection:
        postgres = connection.dialect.name == "postgresql"
        if postgres:
            connection.execute(text("SET LOCAL statement_timeout = 0"))
        command.upgrade(alembic_config(connection), revision)
        if postgres:
            set_statement_timeout(connection, settings.db_statement_timeout_ms)
            if owner is not settings:
                grant_application_role(connection, settings)


def downgrade(settings: Settings, revision: str) -> None:
    with get_engine(owner_settings(settings)).begin() as connection:
        command.downgrade(alembic_config(connection), revision)


def current_revision(settings: Settings) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with get_engine(settings).connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def _quote(connection: Connection, name: str) -> str:
    return connection.dialect.identifier_preparer.quote(name)


def set_statement_timeout(connection: Connection, timeout_ms: int) -> None:
    """Every new session on this database starts with ``statement_timeout`` (0: none)."""
    database = connection.exec_driver_sql("SELECT current_database()").scalar_one()
    connection.exec_driver_sql(
        f"ALTER DATABASE {_quote(connection, database)} SET statement_timeout = {int(timeout_ms)}"
    )


def grant_application_role(connection: Connection, settings: Settings) -> None:
    """Create or update the application's login role from its credentials, and grant it exactly
    what the service does: connect, and SELECT/INSERT/UPDATE/DELETE on the service's tables.

    The password is sent as a bound literal and never logged. The role owns nothing, so it can
    neither change the schema nor grant rights to others.
    """
    url = database_url(settings)
    user, password = url.username, url.password
    if not user:
        raise ValueError("the application's database credentials name no user")
    role = _quote(connection, user)
    owner = connection.exec_driver_sql("SELECT current_user").scalar_one()
    if user == owner:
        raise ValueError("the application and the migration use the same database user; give the app its own")
    exists = connection.exec_driver_sql("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)).first()
    verb = "ALTER" if exists else "CREATE"
    if password:
        connection.exec_driver_sql(f"{verb} ROLE {role} LOGIN PASSWORD %s", (str(password),))
    else:  # trust authentication (local servers and tests)
        connection.exec_driver_sql(f"{verb} ROLE {role} LOGIN")
    connection.exec_driver_sql(f"ALTER ROLE {role} NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS")
    database = _quote(connection, connection.exec_driver_sql("SELECT current_database()").scalar_one())
    connection.exec_driver_sql(f"GRANT CONNECT ON DATABASE {database} TO {role}")
    connection.exec_driver_sql(f"GRANT USAGE ON SCHEMA public TO {role}")
    connection.exec_driver_sql("REVOKE CREATE ON SCHEMA public FROM PUBLIC")  # PostgreSQL 15+ default
    connection.exec_driver_sql(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}")
    connection.exec_driver_sql(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}")
    connection.exec_driver_sql(f"REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON {VERSION_TABLE} FROM {role}")
