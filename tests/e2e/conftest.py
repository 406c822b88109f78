"""Browser tests: the app served by uvicorn in a thread, moto's S3 server, Debian's Chromium.

Playwright drives the system browser (``/usr/bin/chromium``); it never downloads one. The tests
are skipped when that browser or the web/ packages (axe-core) are not installed.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import MiB, Tenant, make_settings, new_tenant
from tests.pg_server import free_port

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = "/usr/bin/chromium"
AXE = ROOT / "web" / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@dataclass(frozen=True)
class LiveServer:
    url: str
    settings: object

    def tenant(self, prefix: str) -> Tenant:
        return new_tenant(self.settings, f"{prefix}-{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="module")
def live_server(migrated: str, s3_endpoint: str) -> Iterator[LiveServer]:
    import uvicorn

    from service.api.app import create_app
    from service.devrun import prepare_bucket

    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    # 5 MiB parts, the smallest S3 allows, so a 16 MiB file is a 4-part upload.
    settings = make_settings(
        migrated,
        s3_endpoint,
        public_base_url=base_url,
        cors_origins=[base_url],
        multipart_threshold_bytes=5 * MiB,
        multipart_part_bytes=5 * MiB,
    )
    prepare_bucket(settings, [base_url])
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base_url}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    else:
        pytest.fail("the app did not start")
    try:
        yield LiveServer(url=base_url, settings=settings)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def browser() -> Iterator:
    if not Path(CHROMIUM).exists():
        _missing("Debian's chromium is not installed (.ci/run installs it)")
    try:
        from playwright import sync_api
    except ImportError:
        _missing("playwright is not installed (requirements-dev.txt)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def context(browser, live_server) -> Iterator:
    context = browser.new_context(base_url=live_server.url, accept_downloads=True)
    context.set_default_timeout(30_000)
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def page(context):
    return context.new_page()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


def _missing(reason: str) -> None:
    # `make test` installs Chromium and web/'s packages: a missing one is a failure, never a skip.
    pytest.fail(reason)


def axe_source() -> str:
    if not AXE.exists():
        _missing("axe-core is not installed: run `npm ci --prefix web`")
    return AXE.read_text()
