"""Security fixtures: an app of its own per test (server errors come back as responses)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app


@pytest.fixture
def api(settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), base_url="http://testserver", raise_server_exceptions=False) as client:
        yield client
