"""What every figure shares: the servers, wrk, interleaved repetitions, the context, the result
table and ``bench/results.json``.

Every import of the service's own modules (``service.*``, ``handlers.*``, ``tests.*``) that the
benchmarks need is in the "Service entry points" section below, so a module move is a change here.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

ROOT = Path(__file__).resolve().parent.parent
BASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
RESULTS = ROOT / "bench" / "results.json"
MiB = 1024 * 1024

# Service entry points ---------------------------------------------------------------------------
# The command that serves the app, and the module the Lambda runtime imports (its `handler`).
SERVE_ARGS = ["-m", "service", "serve"]
LAMBDA_MODULE = "handlers.api"


def service_settings(**values: Any):
    from service.core.settings import Settings

    return Settings(**values)


def create_app(settings):
    from service.api.app import create_app as build

    return build(settings)


def lambda_handler_for(app):
    from handlers.api import build_handler

    return build_handler(app)


def migrate_database(settings) -> None:
    from service.core import migrate

    migrate.upgrade(settings)


def new_api_key(settings, tenant: str) -> str:
    from service.auth.api_keys import create_api_key
    from service.core.db import session_scope

    with session_scope(settings) as session:
        return create_api_key(session, owner=tenant, name="bench").token


def s3_client(settings):
    from service.core.storage import s3_client as cached

    return cached(settings)


def service_presign_parts(settings, *, key: str, upload_id: str, part_numbers: list[int]) -> dict[str, str]:
    import uuid
    from datetime import UTC, datetime

    from service.core.storage import Storage
    from service.recordings.models import Status, UploadMethod
    from service.recordings.store import RecordingRow
    from service.recordings.uploads import presign_parts

    now = datetime.now(UTC)
    recording = RecordingRow(
        id=uuid.uuid4(),
        owner="bench",
        title=None,
        filename="a.wav",
        content_type="audio/wav",
        size_bytes=None,
        checksum_sha256=None,
        s3_key=key,
        s3_version_id=None,
        upload_method=UploadMethod.MULTIPART,
        upload_id=upload_id,
        part_size=None,
        part_count=100,
        status=Status.PENDING,
        metadata={},
        failure_reason=None,
        created_at=now,
        updated_at=now,
        completed_at=None,
        deleted_at=None,
        swept_at=None,
    )
    return presign_parts(storage=Storage.from_settings(settings), recording=recording, part_numbers=part_numbers)


def open_multipart(settings, *, key: str) -> str:
    from service.core.storage import Storage

    return Storage.from_settings(settings).create_multipart(key=key, content_type="audio/wav")


def lambda_stage():
    """The Dockerfile's lambda stage (tests/ops/dockerfile.py reads it)."""
    from tests.ops.dockerfile import parse

    return parse(ROOT / "Dockerfile")["lambda"]


@contextmanager
def scratch_database(prefix: str = "recordings_bench") -> Iterator[str]:
    from service.core.db import dispose_engines
    from tests.pg_server import scratch_database as scratch

    with scratch(BASE_URL, prefix) as url:
        try:
            yield url
        finally:
            dispose_engines()


@contextmanager
def local_s3() -> Iterator[str]:
    from service.devrun import embedded_s3

    with embedded_s3() as endpoint:
        yield endpoint


def prepare_bucket(settings) -> None:
    from service.devrun import prepare_bucket as prepare

    prepare(settings, ["http://127.0.0.1"])


@contextmanager
def pgbouncer(database_url: str) -> Iterator[str]:
    """PgBouncer in transaction mode (the tests' stand-in for RDS Proxy) in front of the server
    of ``database_url``; yields ``database_url`` through it."""
    from sqlalchemy.engine import make_url

    from tests.pg_server import pgbouncer as start

    url = make_url(database_url)
    users = {url.username or "postgres": url.password or ""}
    with start(url.host or "127.0.0.1", url.port or 5432, users) as bouncer:
        yield bouncer.url_for(database_url)


# Context ----------------------------------------------------------------------------------------


@dataclass
class Context:
    """What the groups share: one database, one S3 server and bucket, one seeded tenant."""

    settings: Any  # the service's Settings for the bench database
    token: str  # API key of TENANT
    ids: list[str]  # TENANT's available recordings
    database_url: str
    s3_endpoint: str
    bucket: str
    reps: int  # repetitions of each load run
    seconds: float  # length of each load run
    quick: bool
    tenant: str = "bench"

    def app_env(self, database_url: str | None = None) -> dict[str, str]:
        return app_env(database_url or self.database_url, self.s3_endpoint, self.bucket)

    def baseline_env(
        self, database_url: str | None = None, tenant: str | None = None, token: str | None = None
    ) -> dict[str, str]:
        """The app's environment plus what the baseline reads: its DSN, the tenant and the API
        key it authenticates (the seeded tenant's by default) and the service's S3 client
        settings (so both sign and call S3 alike)."""
        s = self.settings
        return {
            **self.app_env(database_url),
            "BASELINE_DSN": libpq_dsn(database_url or self.database_url),
            "BASELINE_TENANT": tenant or self.tenant,
            "BASELINE_TOKEN": token or self.token,
            "BASELINE_DEFAULT_POOL_SIZE": str(s.db_pool_size),
            "BASELINE_S3_CONNECT_TIMEOUT": str(s.s3_connect_timeout_seconds),
            "BASELINE_S3_READ_TIMEOUT": str(s.s3_read_timeout_seconds),
            "BASELINE_S3_MAX_ATTEMPTS": str(s.s3_max_attempts),
            "BASELINE_PRESIGN_EXPIRES": str(s.presign_expires_seconds),
            "BASELINE_MAX_UPLOAD_BYTES": str(s.max_upload_bytes),
        }


def libpq_dsn(database_url: str) -> str:
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    return f"host={url.host} port={url.port or 5432} user={url.username} dbname={url.database}"


def app_env(database_url: str, s3_endpoint: str, bucket: str) -> dict[str, str]:
    """This process's environment with the app's settings for the bench database and bucket."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "S3_", "PROMETHEUS_"))}
    return env | settings_env(database_url, s3_endpoint, bucket) | {"PYTHONPATH": str(ROOT)}


def settings_env(database_url: str, s3_endpoint: str, bucket: str) -> dict[str, str]:
    """The app's settings (environment variables) for the bench database and bucket, alone."""
    return {
        "ENVIRONMENT": "bench",
        "DATABASE_URL": database_url,
        "S3_ENDPOINT_URL": s3_endpoint,
        "S3_BUCKET": bucket,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "LOG_LEVEL": "INFO",
        "METRICS_ENABLED": "true",
        # One tenant sends the whole load: its per-tenant quotas would turn the run into 429s.
        "RATE_LIMIT_PER_MINUTE": "0",
        "MAX_PENDING_UPLOADS_PER_TENANT": "0",
    }


INSERT_ROWS = """
INSERT INTO recordings (id, owner, title, filename, content_type, size_bytes, s3_key, s3_version_id, upload_method,
                        status, metadata, created_at, updated_at, completed_at)
SELECT md5(:owner || g::text)::uuid, :owner, 'take ' || g, 'take.wav', 'audio/wav', 1048576,
       :owner || '/' || md5(:owner || g::text)::uuid, 'v1', 'POST', 'available', '{"session": "bench"}'::jsonb,
       now() - (g || ' seconds')::interval, now(), now()
FROM generate_series(1, :n) AS g
"""


def seed_tenant(ctx_settings, database_url: str, tenant: str, count: int) -> tuple[str, list[str]]:
    """An API key for ``tenant`` and ``count`` available recordings owned by it."""
    from sqlalchemy import create_engine, text

    token = new_api_key(ctx_settings, tenant)
    engine = create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(text(INSERT_ROWS), {"owner": tenant, "n": count})
        rows = connection.execute(text("SELECT id FROM recordings WHERE owner = :o ORDER BY id"), {"o": tenant})
        ids = [str(r[0]) for r in rows]
        connection.execute(text("ANALYZE recordings"))
    engine.dispose()
    return token, ids


# Servers ----------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_count() -> int:
    return len(os.sched_getaffinity(0))


@contextmanager
def server(command: list[str], env: dict[str, str], port: int) -> Iterator[subprocess.Popen]:
    log = tempfile.TemporaryFile()
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"server did not start: {log.read()[-2000:].decode(errors='replace')}") from None
                time.sleep(0.1)
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()


@contextmanager
def app_server(
    env: dict[str, str], port: int, *, workers: int = 1, cpus: str | None = None
) -> Iterator[subprocess.Popen]:
    """``python -m service serve`` with production settings, optionally pinned to ``cpus``;
    several workers share their metrics through a multiprocess directory, as in the image."""
    pin = ["taskset", "-c", cpus] if cpus else []
    command = [*pin, sys.executable, *SERVE_ARGS, "--port", str(port), "--workers", str(workers)]
    if workers == 1:
        with server(command, env, port) as process:
            yield process
        return
    with (
        tempfile.TemporaryDirectory(prefix="bench-prometheus-") as metrics,
        server(command, {**env, "PROMETHEUS_MULTIPROC_DIR": metrics}, port) as process,
    ):
        yield process


def baseline_server(env: dict[str, str], port: int):
    command = [sys.executable, "-m", "uvicorn", "bench.baseline_app:app", "--port", str(port), "--workers", "1"]
    return server(command, env, port)


@contextmanager
def server_pair(app: dict[str, str], baseline: dict[str, str]) -> Iterator[tuple[int, int]]:
    """The app and the baseline, each on its own port: yields (app port, baseline port)."""
    port_app, port_base = free_port(), free_port()
    with app_server(app, port_app), baseline_server(baseline, port_base):
        yield port_app, port_base


# wrk --------------------------------------------------------------------------------------------


@dataclass
class Load:
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value).groups()
    return float(number) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]


# Prints the first failed answer of each thread, so a failed run says why.
_REPORT_FAILURES = """
local reported = false
response = function(status, headers, body)
  if status > 399 and not reported then reported = true; io.write("FAILED ", status, " ", body, "\\n") end
end
"""


def wrk(
    port: int, script: str, seconds: float, *, connections: int = 16, threads: int = 2, cpus: str | None = None
) -> Load:
    """One wrk run; ``script`` may define ``request`` but not ``response`` (used to report failures)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script + _REPORT_FAILURES)
    pin = ["taskset", "-c", cpus] if cpus else []
    try:
        result = subprocess.run(
            [
                *pin,
                "wrk",
                f"-t{threads}",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                "--latency",
                "-s",
                handle.name,
                f"http://127.0.0.1:{port}",
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=seconds + 60,
        )
    finally:
        os.unlink(handle.name)
    out = result.stdout
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    for line in re.findall(r"^FAILED .*$", out, re.M)[:2]:
        print(f"  wrk: {line[:300]}", flush=True)
    errors += sum(int(n) for n in re.findall(r"Socket errors: connect (\d+)", out))
    return Load(
        requests=int(re.search(r"(\d+) requests in", out).group(1)),
        rps=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        p50_ms=_ms(re.search(r"\s50%\s+(\S+)", out).group(1)),
        p99_ms=_ms(re.search(r"\s99%\s+(\S+)", out).group(1)),
        errors=errors,
    )


def lua_list(values: Sequence[str]) -> str:
    return "{" + ",".join(json.dumps(v) for v in values) + "}"


def auth_header(token: str) -> str:
    return f'wrk.headers["Authorization"] = "Bearer {token}"\n'


def interleaved_loads(
    runs: dict[str, Callable[[], Load]], reps: int, *, warm_up: Callable[[], None] | None = None
) -> dict[str, list[Load]]:
    """``reps`` rounds of every run in turn (baseline and app alternate, so machine noise falls
    on both alike); raises when any request failed."""
    if warm_up:
        warm_up()
    loads: dict[str, list[Load]] = {name: [] for name in runs}
    for _ in range(reps):
        for name, run in runs.items():
            loads[name].append(run())
    failed = {name: [x.errors for x in runs_] for name, runs_ in loads.items() if any(x.errors for x in runs_)}
    if failed:
        raise RuntimeError(f"failed requests under load: {failed}")
    return loads


def paired_loads(app: int, base: int, scripts: dict[str, str], ctx: Context) -> dict[str, list[Load]]:
    """Every script against the app and the baseline, after a warm-up of each, interleaved:
    the loads by ``app_<name>`` and ``base_<name>``."""

    def warm_up() -> None:  # imports, pools, caches
        for port in (app, base):
            for script in scripts.values():
                wrk(port, script, 2)

    runs: dict[str, Callable[[], Load]] = {}
    for name, script in scripts.items():
        runs[f"base_{name}"] = lambda script=script: wrk(base, script, ctx.seconds)
        runs[f"app_{name}"] = lambda script=script: wrk(app, script, ctx.seconds)
    return interleaved_loads(runs, ctx.reps, warm_up=warm_up)


# Measurements -----------------------------------------------------------------------------------


@dataclass
class Measurement:
    """One figure's value: the median ratio, its min-max spread over repetitions, raw numbers."""

    ratio: float
    spread: tuple[float, float] | None = None
    detail: dict = field(default_factory=dict)
    ok: bool | None = None  # set when the target is more than the ratio's bound


def ratios(values: Sequence[float], *, detail: dict | None = None) -> Measurement:
    """The median of per-repetition ratios, with their min-max spread."""
    return Measurement(statistics.median(values), (min(values), max(values)), detail or {})


def load_ratio(app: list[Load], base: list[Load], attr: Literal["rps", "p99_ms", "p50_ms"]) -> Measurement:
    per_rep = [getattr(a, attr) / getattr(b, attr) for a, b in zip(app, base, strict=True)]
    return ratios(
        per_rep,
        detail={
            "app": [round(getattr(x, attr), 2) for x in app],
            "baseline": [round(getattr(x, attr), 2) for x in base],
        },
    )


def interleaved_timings(ours: Callable[[], None], base: Callable[[], None], rounds: int) -> list[float]:
    """Per round, the wall time of ``ours`` over that of ``base`` (base first)."""
    ours(), base()
    out = []
    for _ in range(rounds):
        started = time.perf_counter()
        base()
        base_time = time.perf_counter() - started
        started = time.perf_counter()
        ours()
        out.append((time.perf_counter() - started) / base_time)
    return out


def fresh_process_ratio(app: Callable[[], float], base: Callable[[], float], runs: int) -> Measurement:
    """Median seconds of ``app`` over those of ``base``, each a fresh process, interleaved."""
    app_s, base_s = [], []
    for _ in range(runs):
        base_s.append(base())
        app_s.append(app())
    return Measurement(
        statistics.median(app_s) / statistics.median(base_s),
        (min(app_s) / max(base_s), max(app_s) / min(base_s)),
        {"app_median_s": round(statistics.median(app_s), 4), "baseline_median_s": round(statistics.median(base_s), 4)},
    )


# Registry and run -------------------------------------------------------------------------------

Group = Callable[[Context], dict[str, Measurement]]


@dataclass(frozen=True)
class Spec:
    """A figure, declared once: its group function measures it (with the group's other figures)."""

    name: str
    group: Group
    what: str
    baseline: str
    op: Literal[">=", "<="] | None  # None: reported, no target
    bound: float | None = None

    @property
    def target(self) -> str:
        return f"{self.op} {self.bound:g}" if self.op else "report"

    def met(self, measured: Measurement) -> bool:
        if self.op is None:
            return True
        within = measured.ratio >= self.bound if self.op == ">=" else measured.ratio <= self.bound
        return within and measured.ok is not False


def run(specs: Sequence[Spec], argv: list[str] | None = None) -> int:
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"figure declared twice: {names}")
    parser = argparse.ArgumentParser(prog="python -m bench.run")
    parser.add_argument("--quick", action="store_true", help="fewer and shorter repetitions")
    parser.add_argument("--only", nargs="*", choices=names, metavar="NAME", help=f"figures to run: {', '.join(names)}")
    args = parser.parse_args(argv)
    wanted = [spec for spec in specs if not args.only or spec.name in args.only]
    groups: list[Group] = list(dict.fromkeys(spec.group for spec in wanted))
    measured: dict[str, Measurement] = {}

    # The local S3 server accepts any credentials; real ones must never be used here.
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
    os.environ.pop("AWS_PROFILE", None)
    with scratch_database() as database_url, local_s3() as s3_endpoint:
        import logging

        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        settings = service_settings(
            environment="bench",
            database_url=database_url,
            s3_endpoint_url=s3_endpoint,
            s3_bucket=bucket,
            rate_limit_per_minute=0,
            max_pending_uploads_per_tenant=0,  # as in app_env: one tenant, all load
        )
        migrate_database(settings)
        prepare_bucket(settings)
        token, ids = seed_tenant(settings, database_url, "bench", 1000)
        ctx = Context(
            settings=settings,
            token=token,
            ids=ids,
            database_url=database_url,
            s3_endpoint=s3_endpoint,
            bucket=bucket,
            reps=2 if args.quick else 5,
            seconds=4 if args.quick else 8,
            quick=args.quick,
        )
        for group in groups:
            mine = {spec.name for spec in specs if spec.group is group}
            print(f"measuring {', '.join(sorted(mine & {s.name for s in wanted}))} ...", flush=True)
            started = time.monotonic()
            got = group(ctx)
            if set(got) != mine:
                raise RuntimeError(
                    f"{group.__module__}.{group.__name__} measured {sorted(got)}, declared {sorted(mine)}"
                )
            measured.update(got)
            print(f"  ({time.monotonic() - started:.0f} s)", flush=True)
    return report(wanted, measured)


def report(wanted: Sequence[Spec], measured: dict[str, Measurement]) -> int:
    print(f"\n{'figure':<28} {'ratio':>7} {'spread':>11} {'target':>8}  result")
    failed, results = 0, {}
    for spec in wanted:
        m = measured[spec.name]
        ok = spec.met(m)
        failed += not ok
        spread = f"{m.spread[0]:.2f}-{m.spread[1]:.2f}" if m.spread else "-"
        verdict = "-" if spec.op is None else "ok" if ok else "MISSED"
        print(f"{spec.name:<28} {m.ratio:>7.3f} {spread:>11} {spec.target:>8}  {verdict}")
        results[spec.name] = {
            "what": spec.what,
            "baseline": spec.baseline,
            "target": spec.target,
            **asdict(m),
            "ok": ok,
        }
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {RESULTS.relative_to(ROOT)}; {failed} target(s) missed")
    return 1 if failed else 0
