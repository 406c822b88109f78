"""Security headers on every response, CORS only for configured origins, Bandit clean."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from tests.conftest import make_settings

ROOT = Path(__file__).resolve().parents[2]
EXPECTED = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


def test_security_headers_on_every_route_and_error(api, alice):
    schema = api.get("/openapi.json").json()
    requests = [("GET", "/openapi.json", {}), ("GET", "/v1/nothing", {}), ("PUT", "/v1/recordings", {})]
    for path, operations in schema["paths"].items():
        concrete = path.replace("{recording_id}", "00000000-0000-4000-8000-000000000000")
        concrete = concrete.replace("{upload_id}", "u").replace("{part_number}", "1")
        for method in operations:
            requests.append((method.upper(), concrete, {}))
            requests.append((method.upper(), concrete, alice.headers))
    requests.append(("POST", "/v1/recordings", {**alice.headers, "content-type": "application/json"}))
    seen = set()
    for method, path, headers in requests:
        response = api.request(method, path, headers=headers, content=b"{" if method == "POST" else None)
        seen.add(response.status_code)
        for name, value in EXPECTED.items():
            assert response.headers.get(name) == value, (method, path, response.status_code, name)
    assert {200, 401, 404, 405, 422} <= seen


@pytest.fixture
def cors_api(settings):
    configured = make_settings(
        settings.database_url.get_secret_value(),
        settings.s3_endpoint_url,
        s3_bucket=settings.s3_bucket,
        cors_origins="https://app.example.com",
    )
    with TestClient(create_app(configured)) as client:
        yield client


def _preflight(client, origin):
    return client.options(
        "/v1/recordings",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization",
        },
    )


def test_cors_allows_only_configured_origins(cors_api, alice):
    allowed = _preflight(cors_api, "https://app.example.com")
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
    for origin in ("https://evil.example", "https://app.example.com.evil.example", "null"):
        refused = _preflight(cors_api, origin)
        assert "access-control-allow-origin" not in refused.headers, origin
        simple = cors_api.get("/v1/recordings", headers={**alice.headers, "Origin": origin})
        assert "access-control-allow-origin" not in simple.headers, origin


def test_no_cors_headers_when_no_origin_is_configured(api, alice):
    assert "access-control-allow-origin" not in _preflight(api, "https://app.example.com").headers
    response = api.get("/v1/recordings", headers={**alice.headers, "Origin": "https://app.example.com"})
    assert "access-control-allow-origin" not in response.headers


def test_bandit_finds_nothing_medium_or_high():
    if shutil.which("bandit", path=str(Path(sys.executable).parent)) is None:
        pytest.fail("bandit is not installed: it is pinned in requirements-dev.txt (make install)")
    targets = [str(ROOT / name) for name in ("service", "handlers") if (ROOT / name).is_dir()]
    result = subprocess.run(
        [sys.executable, "-m", "bandit", "-r", "-q", "-f", "json", "--severity-level", "medium", *targets],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    report = json.loads(result.stdout)
    findings = [f"{r['filename']}:{r['line_number']} {r['test_id']} {r['issue_text']}" for r in report["results"]]
    assert not findings, "\n".join(findings)
    assert result.returncode == 0, result.stderr
