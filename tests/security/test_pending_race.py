"""The pending-upload cap under concurrency: creates racing for the last slots against the real
PostgreSQL, directly and through PgBouncer in transaction pooling mode (as RDS Proxy pools)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from service.auth.principal import Principal
from service.db import dispose_engines, session_scope, single_statement_connection
from service.limits import TooManyRequests
from service.recordings import service
from service.recordings.models import Recording, Status
from service.recordings.schemas import RecordingCreate
from service.storage import Storage
from tests.conftest import make_settings

CAP = 3
RACERS = 12


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def pgbouncer_url(settings) -> Iterator[str]:
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not Path(binary).exists():
        pytest.fail("pgbouncer is not installed (Debian package pgbouncer; .ci/run installs it)")
    url = make_url(settings.database_url.get_secret_value())
    port = _free_port()
    # PgBouncer refuses to run as root: as root, it runs as the postgres user, which must read
    # the configuration.
    workdir = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
    workdir.chmod(0o755)
    (workdir / "users.txt").write_text(f'"{url.username}" ""\n')
    config = workdir / "pgbouncer.ini"
    config.write_text(
        "[databases]\n"
        f"{url.database} = host={url.host} port={url.port or 5432} dbname={url.database}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {workdir / 'users.txt'}\n"
        "pool_mode = transaction\ndefault_pool_size = 4\nmax_client_conn = 100\n"
        # This test is about locks under transaction pooling; which startup parameters a
        # pooler refuses is the database configuration's concern, tested with it.
        "ignore_startup_parameters = options\n"
    )
    for path in workdir.iterdir():
        path.chmod(0o644)
    as_user = ["-u", "postgres"] if os.geteuid() == 0 else []
    process = subprocess.Popen([binary, *as_user, str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            process.terminate()
            pytest.fail(f"pgbouncer did not start: {process.communicate(timeout=10)[1].decode()[-500:]}")
        yield url.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
    finally:
        dispose_engines()
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


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
            select(func.count()).where(Recording.owner == "racer", Recording.status == Status.PENDING.value)
        )


@pytest.mark.parametrize("route", ["direct", "pgbouncer"])
def test_concurrent_creates_never_exceed_the_pending_cap(request, settings, route):
    database = settings.database_url.get_secret_value()
    if route == "pgbouncer":
        database = request.getfixturevalue("pgbouncer_url")
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
