"""Fixtures and helpers for the operations tests (image, metrics, alerts, CI/CD, deploy, backups)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
from pathlib import Path

import pytest

from tests.pg_server import free_port

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    """Path of a command-line tool: the project venv first, then PATH. Missing tools fail the test
    (the CI installs them; a skipped check would look like a passing one)."""
    candidate = VENV_BIN / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        pytest.fail(f"required tool {name!r} is not installed (see requirements-ops.txt / .ci/run)")
    return found


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """An environment for child processes without credentials or service settings of this shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DATABASE_", "S3_", "PROMETHEUS_"))}
    env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    return env


PROMETHEUS_SYNTHETIC = {"up"}  # added by Prometheus to every target, not by the app


def promql_metric_names(expr: str) -> set[str]:
    """Metric names of the selectors in a PromQL expression (every selector here has matchers)."""
    return set(re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{", expr))


_SEPARATORS = {"&&", "||", "|", ";", "&"}


def shell_commands(script: str, posix: bool = True) -> list[list[str]]:
    """The simple commands of a shell script (a workflow step, a runbook's code), each as its
    argv, in order: lines (with their backslash continuations) split at ``&&``, ``||``, ``|`` and
    ``;``; a ``$(...)`` is a command of its own, before the one it is part of. ``posix=False``
    keeps the quotes in the words."""
    commands: list[list[str]] = []
    for line in script.replace("\\\n", " ").splitlines():
        if line.strip().startswith("#"):
            continue
        for inner in re.findall(r"\$\(([^()]*)\)", line):
            commands.extend(shell_commands(inner, posix))
        line = re.sub(r"\$\([^()]*\)", "SUBSTITUTED", line)
        lexer = shlex.shlex(line, posix=posix, punctuation_chars=";&|")
        lexer.whitespace_split = True
        argv: list[str] = []
        for token in [*lexer, ";"]:
            if token in _SEPARATORS:
                if argv:
                    commands.append(argv)
                argv = []
            else:
                argv.append(token)
    return commands


def runs(argv: list[str], *prefix: str) -> bool:
    """Whether ``argv`` is the command ``prefix`` (``sudo`` and variable assignments aside)."""
    while argv and (argv[0] == "sudo" or re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", argv[0])):
        argv = argv[1:]
    return argv[: len(prefix)] == list(prefix)


def option_values(argv: list[str], name: str) -> list[str]:
    """Every value given to option ``name`` in ``argv``."""
    return [argv[i + 1] for i, word in enumerate(argv[:-1]) if word == name]


def _promql_top_level(expr: str):
    """(index, character, depth) of each character of ``expr`` outside quoted strings; depth
    counts the (), {} and [] around it."""
    depth, quote = 0, None
    for index, char in enumerate(expr):
        if quote:
            if char == quote and expr[index - 1] != "\\":
                quote = None
            continue
        if char in "\"'`":
            quote = char
        elif char in "({[":
            depth += 1
        elif char in ")}]":
            depth -= 1
        yield index, char, depth


def promql_comparison(expr: str) -> tuple[str, str, float]:
    """The outermost comparison of an alert expression: (left side, operator, threshold)."""
    found = None
    for index, char, depth in _promql_top_level(expr):
        if depth == 0 and char in "<>=!" and expr[index : index + 2] not in ("=~", "!~"):
            operator = expr[index : index + 2] if expr[index + 1 : index + 2] == "=" else char
            if operator in ("==", "!=", ">=", "<=", ">", "<") and (found is None or index > found[0] + 1):
                found = (index, operator)
    assert found, f"no comparison in {expr!r}"
    index, operator = found
    return expr[:index].strip(), operator, float(expr[index + len(operator) :].strip())


def promql_call_arguments(expr: str, function: str) -> list[list[str]]:
    """The arguments of every call of ``function`` in ``expr``, each call's as a list."""
    calls = []
    for match in re.finditer(rf"\b{re.escape(function)}\s*\(", expr):
        start = match.end()
        arguments, begin = [], start
        for index, char, depth in _promql_top_level(expr[start:]):
            if depth == 0 and char == ",":
                arguments.append(expr[begin : start + index].strip())
                begin = start + index + 1
            elif depth < 0:
                arguments.append(expr[begin : start + index].strip())
                break
        calls.append(arguments)
    return calls


def promql_selectors(expr: str) -> list[tuple[str, dict[str, tuple[str, str]]]]:
    """Every ``metric{label="value", ...}`` selector: the metric and its matchers as
    label -> (operator, value)."""
    selectors = []
    for name, body in re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}", expr):
        matchers = re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"', body)
        selectors.append((name, {label: (operator, value) for label, operator, value in matchers}))
    return selectors


@pytest.fixture(scope="session")
def exported_metric_names(tmp_path_factory) -> set[str]:
    """Sample names the real app exposes at /metrics after serving a request, with a pool tracked."""
    from fastapi.testclient import TestClient
    from prometheus_client.parser import text_string_to_metric_families
    from sqlalchemy import create_engine
    from sqlalchemy.pool import QueuePool

    from service.api.app import create_app
    from service.core.settings import Settings
    from service.observability.metrics import pool as pool_metrics

    engine = create_engine(f"sqlite:///{tmp_path_factory.mktemp('pool')}/pool.db", poolclass=QueuePool)
    pool_metrics.track_pool(engine)
    client = TestClient(create_app(Settings(environment="test")))
    assert client.get("/health").status_code == 200
    body = client.get("/metrics").text
    names = {sample.name for family in text_string_to_metric_families(body) for sample in family.samples}
    engine.dispose()
    return names


@pytest.fixture(scope="session")
def node_exporter_metric_names() -> set[str]:
    """Sample names a real node exporter exposes on this machine (Debian's
    prometheus-node-exporter, the same collectors and names as the image on the app instances)."""
    import subprocess
    import time
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    port = free_port()
    process = subprocess.Popen(
        [tool("prometheus-node-exporter"), f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                    body = response.read().decode()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    finally:
        process.terminate()
        process.wait(10)
    return {sample.name for family in text_string_to_metric_families(body) for sample in family.samples}
