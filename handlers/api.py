"""API Gateway (HTTP API payload v2, REST API v1) -> the FastAPI app, through Mangum."""

from service.lambda_runtime import api_handler, lazy_handler


def build_handler(app, *, base_path: str | None = None):
    """The Lambda handler around ``app`` (tests build one around their own app and settings)."""
    return api_handler(app, base_path=base_path)


def _build_service_handler():
    # The app's modules (FastAPI routes, models, SQLAlchemy's ORM) are imported with the app
    # itself, on the first invocation: importing this module costs the adapter alone.
    from service.main import create_app

    return build_handler(create_app())


# Settings and the app are built on the first invocation, never at import.
handler = lazy_handler(_build_service_handler)
