"""API Gateway's path prefixes (stage, custom domain base path) as the ASGI ``root_path``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

if TYPE_CHECKING:
    from mangum.types import ASGI, Receive, Scope, Send


def _normalized(base_path: str | None) -> str:
    base_path = (base_path or "").strip().strip("/")
    return f"/{base_path}" if base_path else ""


def _starts_with(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def gateway_prefix(event: dict[str, Any], path: str, base_path: str = "") -> str:
    """The leading part of ``path`` that API Gateway added in front of the app's own routes.

    A custom domain's base path mapping (configured: API Gateway cannot tell) stays in the path
    of both payload versions. An HTTP API's named stage is the first segment of ``rawPath`` on
    the default endpoint only; REST API (v1) paths never carry the stage.
    """
    prefix = ""
    base_path = _normalized(base_path)
    if base_path and _starts_with(path, base_path):
        prefix = base_path
    context = event.get("requestContext") or {}
    stage = context.get("stage") or "$default"
    stage_in_path = (
        event.get("version") == "2.0"
        and stage != "$default"
        and ".execute-api." in (context.get("domainName") or "")
        and _starts_with(path[len(prefix) :], f"/{stage}")
    )
    return f"{prefix}/{stage}" if stage_in_path else prefix


class GatewayRootPath:
    """Expose API Gateway's path prefix as the ASGI ``root_path``.

    The path keeps its prefix (as the ASGI spec wants), so routing sees the app's own routes while
    generated URLs, the OpenAPI docs and problem ``instance`` fields keep the public path. Mangum's
    own ``api_gateway_base_path`` strips the prefix without telling the app.
    """

    def __init__(self, app: ASGI, base_path: str = "") -> None:
        self.app = app
        self.base_path = base_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        event = scope.get("aws.event")
        if scope["type"] == "http" and event is not None:
            path = _rest_stage(event) + scope["path"]
            prefix = gateway_prefix(event, path, self.base_path) or _rest_stage(event)
            if prefix:
                scope = {**scope, "path": path, "root_path": scope.get("root_path", "") + prefix}
        await self.app(scope, receive, send)


def _rest_stage(event: dict[str, Any]) -> str:
    """A REST API (v1) path leaves out the stage that the client's URL has; the request context's
    path keeps it ("/prod" + "/v1/..."). Empty for other events and on custom domains."""
    if "version" in event or not event.get("path"):
        return ""
    public = unquote((event.get("requestContext") or {}).get("path") or "")
    path = unquote(event["path"])
    return public[: -len(path)] if public != path and public.endswith(path) else ""
