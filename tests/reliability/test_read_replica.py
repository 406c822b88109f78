"""Read routing with a real streaming replica of the test cluster (tests/pg_server.py).

The replica is a hot standby made with ``pg_basebackup -R``: it has the same rows as the primary
as soon as it replays them. To tell which server answered, replay is paused on the replica
(``pg_wal_replay_pause()``): writes made after that are on the primary only.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg2
import pytest
from prometheus_client import REGISTRY
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from service.core.db import reset_engine
from service.core.settings import Settings
from service.web import read_routing
from tests.api.uploading import complete, create, payload, upload_single
from tests.conftest import BASE_DATABASE_URL
from tests.pg_server import SUPERUSER, free_port, start_replica, stop, stop_replica
from tests.reliability.conftest import client_for


def _connect(port: int, dbname: str = "postgres"):
    connection = psycopg2.connect(host="127.0.0.1", port=port, user=SUPERUSER, dbname=dbname, connect_timeout=5)
    connection.autocommit = True
    return connection


def _scalar(connection, sql: str):
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchone()[0]


class Replica:
    def __init__(self, port: int) -> None:
        self.port = port
        self.primary_port = make_url(BASE_DATABASE_URL).port or 5432

    def url_for(self, database_url: str) -> str:
        return make_url(database_url).set(port=self.port).render_as_string(hide_password=False)

    def pause(self, seconds: float = 30) -> None:
        """Pause replay, and wait until it has paused (the call only requests it)."""
        deadline = time.monotonic() + seconds
        with _connect(self.port) as connection:
            _scalar(connection, "SELECT pg_wal_replay_pause()")
            while _scalar(connection, "SELECT pg_get_wal_replay_pause_state()") != "paused":
                if time.monotonic() > deadline:
                    raise AssertionError(f"replay did not pause in {seconds} s")
                time.sleep(0.05)

    def resume(self) -> None:
        with _connect(self.port) as connection:
            _scalar(connection, "SELECT pg_wal_replay_resume()")

    def wait_for(self, what: str = "replay", seconds: float = 30) -> None:
        """Until the replica has received (or replayed) everything the primary wrote so far."""
        with _connect(self.primary_port) as primary:
            # The insert position: the test cluster commits asynchronously (synchronous_commit
            # = off), so the last commit may not be written yet; it streams once it is.
            target = _scalar(primary, "SELECT pg_current_wal_insert_lsn()")
        function = "pg_last_wal_replay_lsn()" if what == "replay" else "pg_last_wal_receive_lsn()"
        deadline = time.monotonic() + seconds
        with _connect(self.port) as replica:
            while not _scalar(replica, f"SELECT {function} >= '{target}'::pg_lsn"):
                if time.monotonic() > deadline:
                    raise AssertionError(f"the replica did not {what} up to {target} in {seconds} s")
                time.sleep(0.05)


def _make_replica(migrated: str) -> Iterator[Replica]:
    primary = make_url(BASE_DATABASE_URL)
    with _connect(primary.port or 5432) as server:
        version = int(_scalar(server, "SHOW server_version_num"))
        senders = int(_scalar(server, "SHOW max_wal_senders"))
    if version // 10000 != 18 or senders < 1:
        pytest.fail(
            "the read-replica tests need the PostgreSQL 18 test cluster, which allows replication: "
            "run `make test`, or `python -m tests.pg_server start` and TEST_DATABASE_URL=<its URL>"
        )
    port = free_port()
    start_replica(port, primary_port=primary.port or 5432)
    replica = Replica(port)
    try:
        replica.wait_for()
        yield replica
    finally:
        stop_replica(port)


@pytest.fixture(scope="module")
def replica(migrated: str) -> Iterator[Replica]:
    yield from _make_replica(migrated)


@pytest.fixture
def routed(settings: Settings, replica: Replica) -> Iterator[Settings]:
    """The app's settings with the replica as its read database; replay running and caught up."""
    replica.resume()
    replica.wait_for()
    read_url = replica.url_for(settings.database_url.get_secret_value())
    routed = settings.model_copy(
        update={
            "database_read_url": SecretStr(read_url),
            "database_read_max_lag_seconds": 3600,
            "database_read_retry_seconds": 0,
        }
    )
    read_routing.forget_failures()
    yield routed
    replica.resume()
    replica.wait_for()  # the primary's TRUNCATE after the test reaches the replica in order
    reset_engine(read_routing.replica_settings(routed))
    read_routing.forget_failures()


def _count(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _uploaded(client, tenant, title: str) -> dict:
    created = upload_single(client, tenant, payload(64), title=title)
    rid = created["recording"]["id"]
    assert complete(client, tenant, rid).json()["status"] == "available"
    return created["recording"]


def _titles(client, tenant) -> list[str]:
    response = client.get("/v1/recordings", headers=tenant.headers)
    assert response.status_code == 200, response.text
    return [item["title"] for item in response.json()["items"]]


def test_list_and_download_are_answered_by_the_replica_get_by_the_primary(routed, replica, alice, bob):
    client = client_for(routed)
    recording = _uploaded(client, alice, "first take")
    replica.wait_for()
    replica.pause()
    # Written after the pause: on the primary only.
    renamed = client.patch(f"/v1/recordings/{recording['id']}", json={"title": "renamed"}, headers=alice.headers)
    assert renamed.status_code == 200
    replica_reads = _count("db_reads_total", target="replica")

    # The list comes from the replica: it still has the old title (a lag of 3600 s is allowed here).
    assert _titles(client, alice) == ["first take"]
    # The recording by id comes from the primary: the caller sees its own change at once.
    got = client.get(f"/v1/recordings/{recording['id']}", headers=alice.headers)
    assert got.json()["title"] == "renamed"
    # The download link comes from the replica, which has the recording available.
    link = client.get(f"/v1/recordings/{recording['id']}/download", headers=alice.headers)
    assert link.status_code == 200, link.text
    # Playing is a download served inline: the same routing.
    play = client.get(f"/v1/recordings/{recording['id']}/play", headers=alice.headers)
    assert play.status_code == 200, play.text
    assert _count("db_reads_total", target="replica") == replica_reads + 3
    # Tenancy holds on the replica too.
    assert client.get(f"/v1/recordings/{recording['id']}/download", headers=bob.headers).status_code == 404
    assert _titles(client, bob) == []

    replica.resume()
    replica.wait_for()
    assert _titles(client, alice) == ["renamed"]


def test_a_lagging_replica_never_hides_the_callers_new_recording(routed, replica, alice):
    """Replay paused: the replica has not seen the new recording. Within the lag limit of 0 s the
    primary answers the list; a recording completed after the pause downloads from the primary."""
    client = client_for(routed)
    _uploaded(client, alice, "old")
    replica.wait_for()
    replica.pause()
    new = _uploaded(client, alice, "new")
    replica.wait_for("receive")  # the WAL of the new recording is on the replica, not replayed
    with _connect(replica.port, make_url(routed.database_url.get_secret_value()).database) as on_replica:
        assert _scalar(on_replica, "SELECT count(*) FROM recordings") == 1  # the replica lacks it

    # With a generous lag limit the replica would answer (and miss the new recording) ...
    assert _titles(client, alice) == ["old"]
    # ... the lag rule sends the list to the primary instead.
    strict = routed.model_copy(update={"database_read_max_lag_seconds": 0})
    strict_client = client_for(strict)
    lagging = _count("db_read_fallbacks_total", reason="lagging")
    assert _titles(strict_client, alice) == ["new", "old"]
    assert _count("db_read_fallbacks_total", reason="lagging") == lagging + 1

    # Download right after complete: the replica has it missing, the primary answers.
    not_on_replica = _count("db_read_fallbacks_total", reason="not_on_replica")
    link = client.get(f"/v1/recordings/{new['id']}/download", headers=alice.headers)
    assert link.status_code == 200, link.text
    assert _count("db_read_fallbacks_total", reason="not_on_replica") == not_on_replica + 1
    assert client.get(f"/v1/recordings/{new['id']}", headers=alice.headers).json()["status"] == "available"


def test_a_pending_upload_on_the_replica_is_verified_on_the_primary(routed, replica, alice):
    """An upload whose bytes arrived but nobody completed: the list verifies it (read repair),
    which writes, so the primary serves that page; the replica later shows it available."""
    client = client_for(routed)
    created = upload_single(client, alice, payload(64), title="uncompleted")
    replica.wait_for()
    not_on_replica = _count("db_read_fallbacks_total", reason="not_on_replica")
    listed = client.get("/v1/recordings", headers=alice.headers).json()["items"]
    assert [item["status"] for item in listed] == ["available"]
    assert _count("db_read_fallbacks_total", reason="not_on_replica") == not_on_replica + 1
    replica.wait_for()
    assert client.get(f"/v1/recordings/{created['recording']['id']}/download", headers=alice.headers).status_code == 200


@pytest.fixture
def doomed_replica(migrated: str) -> Iterator[Replica]:
    yield from _make_replica(migrated)


def test_reads_fall_back_to_the_primary_when_the_replica_is_down(settings, doomed_replica, alice):
    read_url = doomed_replica.url_for(settings.database_url.get_secret_value())
    routed = settings.model_copy(update={"database_read_url": SecretStr(read_url), "database_read_retry_seconds": 60})
    read_routing.forget_failures()
    client = client_for(routed)
    try:
        recording = _uploaded(client, alice, "kept")
        doomed_replica.wait_for()
        assert _titles(client, alice) == ["kept"]  # the replica answers while it runs
        stop(doomed_replica.port)

        unreachable = _count("db_read_fallbacks_total", reason="unreachable")
        assert _titles(client, alice) == ["kept"]
        assert client.get(f"/v1/recordings/{recording['id']}/download", headers=alice.headers).status_code == 200
        assert _count("db_read_fallbacks_total", reason="unreachable") == unreachable + 2
        # The replica is not part of readiness: the primary serves every read.
        ready = client.get("/health/ready")
        assert ready.status_code == 200, ready.text
        created = create(client, alice, size=10)
        assert client.get(f"/v1/recordings/{created['recording']['id']}", headers=alice.headers).status_code == 200
    finally:
        reset_engine(read_routing.replica_settings(routed))
        read_routing.forget_failures()


def test_a_query_the_replica_cancels_is_answered_by_the_primary_and_the_replica_stays_in_use(routed, alice):
    """A server-side error on the replica (here its statement timeout; in production also a
    conflict with recovery) costs that one read a trip to the primary, not the replica's use."""
    from sqlalchemy import text

    errors = _count("db_read_fallbacks_total", reason="replica_error")

    def slow_on_replica(session, on_replica: bool) -> str:
        if on_replica:
            session.execute(text("SET LOCAL statement_timeout = 10"))
            session.execute(text("SELECT pg_sleep(1)"))
        return "primary" if not on_replica else "replica"

    assert read_routing.routed_read(routed, slow_on_replica) == "primary"
    assert _count("db_read_fallbacks_total", reason="replica_error") == errors + 1
    assert read_routing.routed_read(routed, lambda session, on_replica: on_replica) is True
