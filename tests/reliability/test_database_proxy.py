"""The database as production has it: behind RDS Proxy (PgBouncer here), as a least-privilege
application role, with the statement timeout set where the proxy keeps it, and connections that
the server drops (failover, proxy restart, reboot) never turning into errors."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import psycopg2
import pytest
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, ProgrammingError

from service.core import migrate
from service.core.db import get_engine, reset_engine
from tests.conftest import BASE_DATABASE_URL, make_settings, pooler_users, through_pooler
from tests.pg_server import free_port, pgbouncer, scratch_database
from tests.reliability.conftest import client_for

BODY = {"filename": "take.wav", "content_type": "audio/wav", "size_bytes": 100}


def _connect(url: str, **extra):
    parts = make_url(url)
    return psycopg2.connect(
        host=parts.host,
        port=parts.port,
        user=parts.username,
        password=parts.password,
        dbname=parts.database,
        connect_timeout=5,
        **extra,
    )


def test_the_pooler_refuses_startup_options_as_rds_proxy_does(pooler, migrated):
    """The stand-in is as strict as RDS Proxy: libpq startup ``options`` are refused."""
    with pytest.raises(psycopg2.OperationalError, match="unsupported startup parameter: options"):
        _connect(pooler.url_for(migrated), options="-c statement_timeout=1000")
    _connect(pooler.url_for(migrated)).close()  # the same connection without options is accepted


@pytest.fixture
def app_settings_through_pooler(settings, pooler):
    settings = through_pooler(settings, pooler)
    yield settings
    reset_engine(settings)


def test_the_app_role_may_write_rows_but_never_change_the_schema(app_settings_through_pooler):
    with get_engine(app_settings_through_pooler).connect() as connection:
        assert connection.execute(text("SELECT current_user")).scalar_one().startswith("recordings_app_")
        assert connection.execute(text("SELECT count(*) FROM recordings")).scalar_one() == 0
    for ddl in [
        "CREATE TABLE intruder (id int)",
        "ALTER TABLE recordings ADD COLUMN intruder int",
        "DROP TABLE api_keys",
        "TRUNCATE recordings",
        "UPDATE alembic_version SET version_num = 'x'",
        "CREATE INDEX intruder ON recordings (created_at)",
    ]:
        with (
            get_engine(app_settings_through_pooler).connect() as connection,
            pytest.raises(ProgrammingError, match=r"permission denied|must be owner"),
        ):
            connection.execute(text(ddl))


def test_the_statement_timeout_cuts_off_a_slow_query_through_the_pooler(settings, s3_endpoint):
    """The timeout lives on the database (set by the migration), so a session through the pooler
    has it without any startup option or SET; a slow statement is cancelled."""
    with scratch_database(BASE_DATABASE_URL, "recordings_timeout") as owner_url:
        app = make_url(settings.database_url.get_secret_value())
        app_url = make_url(owner_url).set(username=app.username, password=app.password)
        app_url = app_url.render_as_string(hide_password=False)
        short = make_settings(app_url, s3_endpoint, database_migration_url=owner_url, db_statement_timeout_ms=300)
        migrate.upgrade(short)
        server = make_url(owner_url)
        with pgbouncer(server.host, server.port, pooler_users(app_url)) as bouncer:
            connection = _connect(bouncer.url_for(app_url))
            try:
                cursor = connection.cursor()
                cursor.execute("SHOW statement_timeout")
                assert cursor.fetchone()[0] == "300ms"
                connection.rollback()
                with pytest.raises(psycopg2.errors.QueryCanceled, match="statement timeout"):
                    cursor.execute("SELECT pg_sleep(5)")
            finally:
                connection.close()
        reset_engine(migrate.owner_settings(short))


def _app_backends(owner_engine, user: str) -> list[int]:
    with owner_engine.connect() as connection:
        return list(
            connection.execute(
                text("SELECT pid FROM pg_stat_activity WHERE usename = :user AND datname = current_database()"),
                {"user": user},
            ).scalars()
        )


def _kill_backends(owner_engine, user: str) -> int:
    pids = _app_backends(owner_engine, user)
    with owner_engine.connect() as connection:
        for pid in pids:
            connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    deadline = time.monotonic() + 10
    while _app_backends(owner_engine, user):
        assert time.monotonic() < deadline, "the killed backends did not go away"
        time.sleep(0.05)
    return len(pids)


@pytest.mark.parametrize("route", ["direct", "pooler"])
def test_no_5xx_after_the_database_drops_every_connection(route, request, settings, owner_engine, alice):
    """A failover, proxy restart or reboot closes every connection in the pool; the requests
    after it must not fail (the pool replaces what the server closed before handing it out)."""
    app_settings = settings if route == "direct" else through_pooler(settings, request.getfixturevalue("pooler"))
    app_settings = app_settings.model_copy(update={"db_pool_size": 4, "db_max_overflow": 4})
    user = make_url(settings.database_url.get_secret_value()).username
    try:
        with client_for(app_settings) as api:
            created = api.post("/v1/recordings", json=BODY, headers=alice.headers)
            assert created.status_code == 201
            path = f"/v1/recordings/{created.json()['recording']['id']}"
            # Fill the pool: concurrent requests check out several connections at once.
            with ThreadPoolExecutor(8) as pool:
                warm = list(pool.map(lambda _: api.get(path, headers=alice.headers).status_code, range(32)))
            assert set(warm) == {200}
            assert _kill_backends(owner_engine, user) >= 1

            def call(i: int) -> int:
                if i % 3 == 0:
                    return api.post("/v1/recordings", json=BODY, headers=alice.headers).status_code
                return api.get(path if i % 3 == 1 else "/v1/recordings", headers=alice.headers).status_code

            with ThreadPoolExecutor(8) as pool:
                after = list(pool.map(call, range(48)))
            assert [code for code in after if code >= 500] == []
            assert set(after) <= {200, 201}
    finally:
        reset_engine(app_settings)


def test_no_5xx_after_the_pooler_restarts(settings, alice):
    """RDS Proxy restarting closes the clients' connections to it (not just its own to RDS): the
    same app, with the same pool, keeps answering once the proxy is back."""
    server = make_url(settings.database_url.get_secret_value())
    users = pooler_users(settings.database_url.get_secret_value())
    port = free_port()
    url = server.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
    app_settings = settings.model_copy(update={"database_url": SecretStr(url), "db_pool_size": 4})
    try:
        with client_for(app_settings) as api:
            with pgbouncer(server.host, server.port, users, port=port):
                assert api.get("/v1/recordings", headers=alice.headers).status_code == 200
            with pgbouncer(server.host, server.port, users, port=port):
                codes = [api.get("/v1/recordings", headers=alice.headers).status_code for _ in range(10)]
    finally:
        reset_engine(app_settings)
    assert codes == [200] * 10


def test_verify_full_checks_the_certificate_and_the_host_name(settings, s3_endpoint):
    """In AWS the app connects with sslmode=verify-full and the CA bundle the image ships. Here a
    TLS-only PgBouncer with a certificate for ``localhost`` plays the endpoint."""
    server = make_url(settings.database_url.get_secret_value())
    with pgbouncer(
        server.host, server.port, pooler_users(settings.database_url.get_secret_value()), tls=True
    ) as bouncer:
        good = make_url(bouncer.url_for(settings.database_url.get_secret_value())).set(host="localhost")
        cases = {
            "right CA, right host": (good, str(bouncer.ca_file), None),
            "right CA, wrong host name": (good.set(host="127.0.0.1"), str(bouncer.ca_file), "does not match host name"),
            "another CA": (good, _certifi_bundle(), "certificate verify failed"),
        }
        for case, (url, ca_file, refusal) in cases.items():
            tls = make_settings(
                url.render_as_string(hide_password=False),
                s3_endpoint,
                s3_bucket=settings.s3_bucket,
                database_sslmode="verify-full",
                database_sslrootcert=ca_file,
            )
            try:
                with get_engine(tls).connect() as connection:
                    rows = connection.execute(text("SELECT count(*) FROM recordings")).scalar_one()
                outcome = f"connected, {rows} rows"
            except OperationalError as exc:
                outcome = str(exc)
            finally:
                reset_engine(tls)
            assert (refusal or "connected, 0 rows") in outcome, case


def _certifi_bundle() -> str:
    import certifi

    return certifi.where()
