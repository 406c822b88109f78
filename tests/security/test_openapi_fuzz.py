"""schemathesis over the live schema: the app served over HTTP (uvicorn), the schema read from
its /openapi.json, every check enabled (server errors, status codes, content types, headers,
response schemas, positive and negative data acceptance, missing headers, unsupported methods
and Allow, use after free, resource availability, ignored auth, object-level authorization),
every phase (examples, coverage, fuzzing and the stateful phase that follows the schema's links
from each create to the operations that take its ids), authenticated as a tenant, fixed seed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from service.api.app import create_app
from tests.conftest import make_settings

SEED = int(os.environ.get("FUZZ_SEED", "20261130"))
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))  # per operation, phase and mode
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
CONFIG = Path(__file__).with_name("schemathesis.toml")


@pytest.fixture
def live_api(migrated, s3_endpoint, settings) -> Iterator[str]:
    # The run makes thousands of requests from one address as one tenant: the request rate and
    # failed-authentication limits would answer 429 (schemathesis accepts it, but it would stop
    # the run from reaching the code behind them).
    configured = make_settings(
        migrated, s3_endpoint, s3_bucket=settings.s3_bucket, rate_limit_per_minute=0, auth_failures_per_minute=0
    )
    server = uvicorn.Server(
        uvicorn.Config(create_app(configured), host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the API did not start")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)


def test_schemathesis_finds_nothing(live_api, alice, tmp_path):
    # Every check is on by default; schemathesis.toml names the exceptions (and why). An explicit
    # --checks=all would override the per-operation configuration there.
    report_path = tmp_path / "report.json"
    command = [
        str(SCHEMATHESIS),
        f"--config-file={CONFIG}",
        "run",
        f"{live_api}/openapi.json",
        f"--header=Authorization: Bearer {alice.token}",
        f"--seed={SEED}",
        f"--max-examples={EXAMPLES}",
        "--workers=1",
        "--no-color",
        "--report=json",
        f"--report-json-path={report_path}",
    ]
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=900, check=False)
    report = json.loads(report_path.read_text())
    operations, cases = report["operations"], report["test_cases"]
    phases = ", ".join(f"{name}={phase['status']}" for name, phase in report["phases"].items())
    print(
        f"\nschemathesis {report['schemathesis_version']}: {operations['tested']}/{operations['total']} operations, "
        f"{cases['generated']} cases, {cases['unique_failures']} unique failures, "
        f"phases {phases}, "
        f"{report['running_time']:.0f}s"
    )
    for name, warning in report["warnings"].items():
        if warning:
            print(f"  warning {name}: {json.dumps(warning)[:300]}")
    assert run.returncode == 0, run.stdout[-20_000:]
    assert cases["unique_failures"] == 0, run.stdout[-20_000:]
    assert not report["failures"], run.stdout[-20_000:]
    assert not report["errors"], run.stdout[-20_000:]
    assert operations["tested"] == operations["total"] >= 20
    assert {name: phase["status"] for name, phase in report["phases"].items()} == {
        "examples": "success",
        "coverage": "success",
        "fuzzing": "success",
        "stateful": "success",
    }
