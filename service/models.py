"""Every ORM model, imported in one place for Alembic and the schema tests."""

from service.auth.models import ApiKey
from service.auth.session_models import BrowserSession
from service.core.db import Base
from service.recordings.models import Recording

__all__ = ["ApiKey", "Base", "BrowserSession", "Recording"]
