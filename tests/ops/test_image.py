"""The container image: hadolint, its shape (targets, non-root, health check, whitelist context) and
the "image command start test": the server stage's CMD, started exactly as written with the
stage's ENV, answers /health, aggregates metrics over its workers and exits cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.ops import dockerfile
from tests.ops.conftest import REPO, VENV_BIN, free_port, tool

DOCKERFILE = REPO / "Dockerfile"


@pytest.fixture(scope="module")
def stages() -> dict[str, dockerfile.Stage]:
    return dockerfile.parse(DOCKERFILE)


def test_hadolint_is_clean():
    result = subprocess.run(
        [tool("hadolint"), "--failure-threshold", "info", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_targets_bases_and_commands(stages):
    assert {"server", "lambda"} <= set(stages)
    for stage in stages.values():
        image, _, tag = stage.base.rpartition(":")
        assert image, stage.base
        assert tag not in {"", "latest"}, f"unpinned base image {stage.base}"
    assert stages["server"].cmd == ["python", "-m", "service", "serve", "--host", "0.0.0.0"]  # noqa: S104
    assert stages["lambda"].cmd == ["handlers.api.handler"]


def test_server_runs_as_non_root_with_health_check(stages):
    server = stages["server"]
    user = server.last("USER")
    assert user
    assert user.split(":")[0] not in {"0", "root"}
    assert "/health" in server.last("HEALTHCHECK")
    assert server.last("STOPSIGNAL") == "SIGTERM"
    assert {"WEB_CONCURRENCY", "PORT", "PROMETHEUS_MULTIPROC_DIR"} <= set(server.env)


def test_dockerignore_whitelists_only_what_the_image_copies():
    lines = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()]
    rules = [line for line in lines if line and not line.startswith("#")]
    assert rules[0] == "*", "the context must start from nothing"
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    assert allowed == {
        "requirements.txt",
        "service",
        "handlers",
        "migrations",
        "alembic.ini",
        "ops/__init__.py",
        "ops/backup",
    }
    copied = {
        args.split()[-2].rstrip("/")
        for stage in dockerfile.parse(DOCKERFILE).values()
        for args in stage.all("COPY")
        if not args.startswith("--from")
    }
    copied = {path.removeprefix("--chown=root:root ").split()[-1] for path in copied}
    assert copied <= allowed, f"COPY of paths the context excludes: {copied - allowed}"


def _workers(pid: int) -> set[int]:
    """uvicorn's worker processes (spawned children; not multiprocessing's resource tracker)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if parent == pid and b"spawn_main" in (entry / "cmdline").read_bytes():
                    found.add(int(entry.name))
            except OSError:
                continue  # the process ended meanwhile
    return found


def _wait_for(condition, message: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, message
        time.sleep(0.05)


def _in_flight(base: str) -> float:
    # Scraping is itself a request in flight: count only the others.
    text = httpx.get(f"{base}/metrics", timeout=5).text
    values = [
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("http_requests_in_progress{")
    ]
    return sum(values) - 1


def _read_response(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_image_command_starts_serves_health_and_stops_gracefully(stages, tmp_path, clean_env):
    server = stages["server"]
    command = server.cmd
    assert command[0] == "python"
    port = free_port()
    env = {**clean_env, **server.env}
    # The image's paths, mapped to this machine: the venv is /opt/venv, WORKDIR is the repo root,
    # and the multiprocess directory is a fresh temporary one.
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{clean_env['PATH']}"
    env["PORT"] = str(port)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "prometheus-multiproc")
    workers = int(env["WEB_CONCURRENCY"])
    assert workers >= 2, "the image runs several workers: metrics must aggregate them"
    log = (tmp_path / "server.log").open("w+")
    proc = subprocess.Popen(
        [str(VENV_BIN / "python"), *command[1:]], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"server exited early:\n{Path(log.name).read_text()}"
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"no /health within 60 s:\n{Path(log.name).read_text()}"
            time.sleep(0.2)
        for _ in range(20):
            response = httpx.get(f"{base}/health", timeout=5)
            assert response.status_code == 200
            assert response.json() == {"status": "ok"}

        # The image's HEALTHCHECK command, run as Docker would run it inside the container.
        check = subprocess.run(
            [str(VENV_BIN / "python"), *server.healthcheck[1:]], env=env, capture_output=True, timeout=30
        )
        assert check.returncode == 0, check.stderr

        # All workers' requests in one scrape, whichever worker answers it.
        metrics_text = httpx.get(f"{base}/metrics", timeout=5).text
        health_lines = [
            line
            for line in metrics_text.splitlines()
            if line.startswith("http_requests_total{") and '"/health"' in line
        ]
        assert health_lines, metrics_text[:2000]
        assert sum(float(line.rsplit(" ", 1)[1]) for line in health_lines) >= 22  # 1 + 20 + HEALTHCHECK

        children = _workers(proc.pid)
        assert len(children) == workers, f"expected {workers} worker processes, found {children}"

        # Graceful: a request in flight when SIGTERM arrives (its body half sent) is still answered.
        body = b'{"filename": "a.wav", "content_type": "audio/wav", "size_bytes": 1}'
        with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
            conn.sendall(
                b"POST /v1/recordings HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body[:10]
            )
            # The request is routed once its headers are parsed; wait until a worker counts it in flight.
            _wait_for(lambda: _in_flight(base) >= 1, "the half-sent request never became in flight")
            proc.send_signal(signal.SIGTERM)
            _wait_for(lambda: Path(log.name).read_text().count("Terminated child process") >= workers, "no shutdown")
            conn.sendall(body[10:])
            answer = _read_response(conn)
        assert answer.startswith(b"HTTP/1.1 "), answer[:200]
        status = int(answer.split()[1])
        assert 400 <= status < 500, answer[:500]  # answered by the app (no credentials), not dropped

        assert proc.wait(timeout=30) == 0
        leftovers = {pid for pid in children if _alive(pid)}
        assert not leftovers, f"workers still running after shutdown: {leftovers}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


def test_both_images_ship_the_database_ca_bundle_the_stacks_point_at(stages):
    """sslmode=verify-full needs the CA file that DATABASE_SSLROOTCERT names in both images."""
    from cdk.constructs.database import DB_CA_BUNDLE

    fetched = stages["dbca"].all("ADD")
    assert any("https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem" in args.split() for args in fetched)
    for name in ("server", "lambda"):
        copies = [args.split() for args in stages[name].all("COPY")]
        assert ["--from=dbca", DB_CA_BUNDLE, DB_CA_BUNDLE] in copies, name


def _index(stage: dockerfile.Stage, predicate) -> list[int]:
    return [i for i, (key, args) in enumerate(stage.instructions) if predicate(key, args)]


def test_images_compile_their_code_and_libraries_at_build_time(stages):
    """Bytecode is built into both images, after the last file it covers arrives, in one
    invalidation mode that does not depend on file times (unchecked-hash), and pip compiles
    nothing itself: compileall skips a file whose .pyc matches its mtime, so pip's timestamp
    .pyc files would stay."""
    lam = stages["lambda"]
    (compile_lambda,) = lam.compileall()
    assert compile_lambda[compile_lambda.index("--invalidation-mode") + 1] == "unchecked-hash"
    assert "${LAMBDA_TASK_ROOT}" in compile_lambda, compile_lambda
    (pip,) = [words for words in lam.commands() if words[:2] == ["pip", "install"]]
    assert pip[pip.index("--target") + 1] == "${LAMBDA_TASK_ROOT}"
    assert "--no-compile" in pip or "-f" in compile_lambda
    compile_at = _index(lam, lambda key, args: key == "RUN" and "compileall" in args)[0]
    assert compile_at > max(_index(lam, lambda key, args: key == "RUN" and "pip install" in args))
    copies = _index(lam, lambda key, args: key == "COPY" and "${LAMBDA_TASK_ROOT}" in args)
    assert copies
    assert compile_at > max(copies), "code copied after the compile step would run uncompiled"
    # At run time nothing is left to compile and /var/task is read-only.
    assert lam.env.get("PYTHONDONTWRITEBYTECODE") == "1"

    server, deps = stages["server"], stages["deps"]
    (compile_server,) = server.compileall()
    assert compile_server[compile_server.index("--invalidation-mode") + 1] == "unchecked-hash"
    copied = {
        args.split()[-2].rstrip("/") for key, args in server.instructions if key == "COPY" and "--from" not in args
    }
    packages = {path for path in copied if (REPO / path).is_dir()}
    assert packages
    assert packages <= set(compile_server), f"{packages} not all compiled by {compile_server}"
    assert max(_index(server, lambda key, args: key == "COPY")) < _index(server, lambda k, a: "compileall" in a)[0]
    (compile_deps,) = deps.compileall()
    assert compile_deps[compile_deps.index("--invalidation-mode") + 1] == "unchecked-hash"
    assert "/opt/venv/lib" in compile_deps
    (deps_pip,) = [words for words in deps.commands() if words[1:3] == ["install", "--no-cache-dir"]]
    assert "--no-compile" in deps_pip or "-f" in compile_deps
    assert ["--from=deps", "/opt/venv", "/opt/venv"] in [args.split() for args in server.all("COPY")]


def test_lambda_compile_step_as_written_gives_bytecode_used_without_its_source(stages, tmp_path):
    """The lambda stage's compile command, run as written on a copy of the handlers package
    and a probe module: every module gets a .pyc of this interpreter, and a read-only import
    with the sources' mtimes and contents changed afterwards (as a COPY may change times) still
    loads the bytecode, never compiling."""
    import shutil

    root = tmp_path / "task"
    shutil.copytree(REPO / "handlers", root / "handlers", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "probe.py").write_text("VALUE = 'compiled'\n")
    (command,) = stages["lambda"].compileall()
    words = [str(VENV_BIN / "python"), *(w.replace("${LAMBDA_TASK_ROOT}", str(root)) for w in command[1:])]
    subprocess.run(words, check=True, timeout=120)

    import importlib.util

    for source in root.rglob("*.py"):
        cached = Path(importlib.util.cache_from_source(str(source)))
        assert cached.exists(), f"no bytecode for {source}"
        flags = int.from_bytes(cached.read_bytes()[4:8], "little")
        assert flags == 0b01, f"{cached}: flags {flags:#b}, not unchecked-hash"

    (root / "probe.py").write_text("VALUE = 'source'\n")
    os.utime(root / "probe.py", (1_000_000_000, 1_000_000_000))
    for path in [root, *root.rglob("*")]:
        path.chmod(path.stat().st_mode & ~0o222)
    try:
        env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1"}
        done = subprocess.run(
            [str(VENV_BIN / "python"), "-c", "import probe; print(probe.VALUE)"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.stdout.strip() == "compiled", done.stdout + done.stderr
    finally:
        for path in [root, *root.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)
