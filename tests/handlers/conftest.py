"""Fixtures for the Lambda entrypoints: the handlers read the process settings, so point them at
the test's settings, and drive the app over ASGI to set the scene."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient


@pytest.fixture
def handler_settings(settings, monkeypatch):
    """``get_settings()`` in the handler modules answers with the test's settings."""
    import handlers.jobs
    import handlers.s3_events

    for module in (handlers.s3_events, handlers.jobs):
        monkeypatch.setattr(module, "get_settings", lambda: settings)
    return settings


@pytest.fixture
def api(app) -> Iterator[TestClient]:
    with TestClient(app, base_url="http://testserver") as test_client:
        yield test_client


@pytest.fixture
def emf(capsys):
    """The EMF documents (CloudWatch metrics) printed so far, as one name -> total mapping."""
    import json

    def read() -> dict[str, float]:
        totals: dict[str, float] = {}
        for line in capsys.readouterr().out.splitlines():
            if not line.startswith('{"_aws"'):
                continue
            document = json.loads(line)
            for directive in document["_aws"]["CloudWatchMetrics"]:
                for metric in directive["Metrics"]:
                    values = document[metric["Name"]]
                    values = values if isinstance(values, list) else [values]
                    totals[metric["Name"]] = totals.get(metric["Name"], 0) + sum(values)
        return totals

    return read
