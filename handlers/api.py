"""API Gateway (HTTP API payload v2, REST API v1) -> the FastAPI app, through Mangum."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from mangum import Mangum

from handlers.gateway import GatewayRootPath
from handlers.runtime import Handler, lambda_entrypoint, lazy_handler


def build_handler(app: Any, *, base_path: str | None = None) -> Handler:
    """The Lambda handler for API Gateway HTTP API (v2) and REST API (v1) events around ``app``.

    ``lifespan="off"``: Mangum would run the lifespan on every invocation; nothing depends on it.
    """
    if base_path is None:
        base_path = app.state.settings.api_gateway_base_path
    adapter = Mangum(GatewayRootPath(app, base_path), lifespan="off", api_gateway_base_path="/")

    # API_GATEWAY_HTTP and API_GATEWAY_REST name the same field: requestContext.requestId.
    @lambda_entrypoint(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
    def api(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return adapter(event, context)

    return api


def _build_service_handler() -> Handler:
    # The app's modules (FastAPI routes, models, SQLAlchemy's ORM) are imported with the app
    # itself, on the first invocation: importing this module costs the adapter alone.
    from service.api.app import create_app

    return build_handler(create_app())


# Settings and the app are built on the first invocation, never at import.
handler = lazy_handler(_build_service_handler)
