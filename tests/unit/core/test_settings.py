"""Settings: bounds, lists from the environment, refused algorithms, local defaults."""

import pytest
from pydantic import ValidationError

from service.core.settings import Settings


def test_presign_expiry_is_capped_at_one_hour():
    with pytest.raises(ValidationError):
        Settings(presign_expires_seconds=3601)
    assert Settings().presign_expires_seconds == 900


def test_lists_come_from_comma_separated_environment(monkeypatch):
    monkeypatch.setenv("ALLOWED_CONTENT_TYPES", "audio/*, video/mp4")
    monkeypatch.setenv("CORS_ORIGINS", "https://a.example,https://b.example")
    settings = Settings()
    assert settings.allowed_content_types == ["audio/*", "video/mp4"]
    assert settings.cors_origins == ["https://a.example", "https://b.example"]


def test_symmetric_jwt_algorithms_are_refused():
    with pytest.raises(ValidationError):
        Settings(jwt_algorithms=["HS256"])


def test_local_defaults_only_in_the_local_environment():
    assert Settings().s3_endpoint_url == "http://127.0.0.1:9000"
    assert Settings(environment="prod").s3_endpoint_url is None
