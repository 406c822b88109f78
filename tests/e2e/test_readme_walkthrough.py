"""The README's curl walk-through, run verbatim against the local run (`python -m service dev`)."""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.pg_server import free_port

ROOT = Path(__file__).resolve().parents[2]


def _walkthrough() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Walk-through with curl", 1)[1]
    return re.search(r"```sh\n(.*?)```", section, re.S).group(1)


@pytest.fixture
def local_run(tmp_path):
    api_port, s3_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DATABASE_", "S3_"))}
    env["PYTHONPATH"] = str(ROOT)
    process = subprocess.Popen(
        [sys.executable, "-m", "service", "dev", "--port", str(api_port), "--s3-port", str(s3_port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{api_port}/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, process.stdout.read()
            time.sleep(0.3)
        else:
            pytest.fail("the local run did not become ready")
        yield api_port
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_curl_walkthrough_works_verbatim(local_run, tmp_path):
    script = _walkthrough().replace("http://127.0.0.1:8000", f"http://127.0.0.1:{local_run}")
    assert (tmp_path / ".local" / "dev-api-key").read_text().startswith("rk_")
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "upload: 204"
    assert '"status":"available"' in lines[1]
    assert lines[-1] == "hello, world"
