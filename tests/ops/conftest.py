"""Fixtures and helpers for the operations tests (image, metrics, alerts, CI/CD, deploy, backups)."""

from __future__ import annotations

import os
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
    import re

    return set(re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{", expr))


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
