"""What the Lambda entrypoints in ``handlers/`` share: Powertools around every invocation (JSON
logs with the request's correlation id and the cold start flag, EMF metrics flushed per
invocation, X-Ray only when tracing is on) and handlers built on their first invocation.

Importing this module is cheap and offline (docs/adr/0003-lazy-construction-for-cold-starts.md).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, overload

from aws_lambda_powertools import Logger

from service.core.heap import building_startup_heap
from service.observability.emf import SERVICE_NAME, invoking, metrics

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer

Handler = Callable[[dict[str, Any], Any], Any]

logger = Logger(service=SERVICE_NAME)


def route_service_logs() -> None:
    """Send the service's own log records through the Powertools logger: the same JSON lines,
    with the invocation's correlation id and cold start flag (Lambda only: the server path
    keeps its own JSON logging)."""
    from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

    logging.getLogger("service")  # the parent every service.* logger propagates to
    copy_config_to_registered_loggers(source_logger=logger, include={"service"})


if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
    route_service_logs()


def tracing_enabled() -> bool:
    """Powertools' own rule (in Lambda, not SAM local, not POWERTOOLS_TRACE_DISABLED), checked
    without building a Tracer: even a disabled one imports the X-Ray SDK, about a second of
    cold start."""
    disabled = os.environ.get("POWERTOOLS_TRACE_DISABLED", "false").strip().lower() in ("1", "true", "yes", "on")
    return bool(os.environ.get("LAMBDA_TASK_ROOT")) and not os.environ.get("AWS_SAM_LOCAL") and not disabled


def _build_tracer() -> Tracer | None:
    if not tracing_enabled():
        return None
    from aws_lambda_powertools import Tracer

    return Tracer(service=SERVICE_NAME, patch_modules=("botocore", "psycopg2"))


tracer = _build_tracer()


@overload
def lambda_entrypoint(function: Handler, *, correlation_id_path: str | None = None) -> Handler: ...


@overload
def lambda_entrypoint(
    function: None = None, *, correlation_id_path: str | None = None
) -> Callable[[Handler], Handler]: ...


def lambda_entrypoint(
    function: Handler | None = None, *, correlation_id_path: str | None = None
) -> Handler | Callable[[Handler], Handler]:
    """Decorate a Lambda handler with the logging context, per-invocation metrics and tracing."""

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        def invoke(event: dict[str, Any], context: Any) -> Any:
            token = invoking.set(True)
            try:
                return handler(event, context)
            finally:
                invoking.reset(token)

        wrapped: Handler = logger.inject_lambda_context(
            invoke, correlation_id_path=correlation_id_path, clear_state=True
        )
        wrapped = metrics.log_metrics(wrapped, capture_cold_start_metric=True)
        if tracer is not None:
            wrapped = tracer.capture_lambda_handler(wrapped)
        return wrapped

    return wrap(function) if function is not None else wrap


def lazy_handler(build: Callable[[], Handler]) -> Handler:
    """A handler built on its first invocation (settings and app are never built at import).

    What building allocated lives as long as the execution environment: it is built with
    garbage collection paused, then frozen out of it, as the server does at start-up.
    """
    built: list[Handler] = []

    def handler(event: dict[str, Any], context: Any) -> Any:
        if not built:
            with building_startup_heap():
                built.append(build())
        return built[0](event, context)

    return handler
