"""The API suite runs on every path to the database production has: direct (the EC2 service to
RDS) and through a transaction-pooling proxy (the Lambda functions to RDS Proxy; PgBouncer here),
each over both transports (ASGI and the Lambda handler)."""

from __future__ import annotations

import pytest

from service.core.settings import Settings
from tests.conftest import through_pooler


@pytest.fixture(params=["direct", "pooler"])
def settings(request, settings: Settings) -> Settings:
    if request.param == "direct":
        return settings
    return through_pooler(settings, request.getfixturevalue("pooler"))
