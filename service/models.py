"""Every table, imported in one place for Alembic and the schema tests."""

from service.auth.models import api_keys
from service.auth.session_models import browser_sessions
from service.core.db import metadata
from service.recordings.models import recordings

__all__ = ["api_keys", "browser_sessions", "metadata", "recordings"]
