"""RFC 9457 problem details for every error the API returns.

Each problem has a stable ``type`` (a relative URI under /problems/), a short ``title``, the
HTTP ``status`` and a ``detail`` written for the caller. Stack traces never leave the process.
"""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, InterfaceError, InvalidRequestError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.core.problems import (
    PROBLEM_JSON,
    RETRY_AFTER_SECONDS,
    ProblemError,
    pattern_meaning,
)

log = logging.getLogger("service.web.errors")


def problem_response(
    status: int,
    slug: str,
    detail: str,
    *,
    title: str | None = None,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"/problems/{slug}",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    body.update(extra)
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


_SLUGS = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    406: "not-acceptable",
    409: "conflict",
    413: "payload-too-large",
    415: "unsupported-media-type",
    429: "too-many-requests",
}


def _message(error: dict[str, Any]) -> str:
    if error.get("type") == "string_pattern_mismatch":
        pattern = (error.get("ctx") or {}).get("pattern", "")
        return pattern_meaning(pattern, "String does not match the pattern stated in the API schema")
    message: str = error.get("msg", "")
    return message


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    errors = []
    for error in exc.errors():
        # The offending input is not echoed back: it may be large, binary or sensitive.
        errors.append({"loc": [str(part) for part in error.get("loc", ())], "msg": _message(error)})
    return errors


def _operation(exc: Exception) -> str | None:
    """``DeleteObject`` -> ``delete_object`` (botocore's method name) for a ClientError."""
    name = getattr(exc, "operation_name", None)
    if not name:
        return None
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


_TYPE_MISMATCHES = {"string_type", "int_type", "float_type", "bool_type", "dict_type", "list_type", "none_required"}
# Location parts that name a union's alternative rather than a place in the request.
_SCHEMA_PART = re.compile(r"^(body|constrained-str|int|float|bool|none|str|(list|dict|function-\w+)\[.*\])$")


def _is_type_mismatch(error: dict[str, Any]) -> bool:
    return error.get("type") in _TYPE_MISMATCHES


def _is_schema_part(part: str) -> bool:
    return bool(_SCHEMA_PART.match(part))


def every_pooled_connection_was_closed(exc: Exception) -> bool:
    """SQLAlchemy's pool gave up a checkout: each connection it tried (the pooled one, then new
    ones) was found closed, as while the server restarts or fails over. It raises a bare
    ``InvalidRequestError`` with this message (after logging "Reconnection attempts exhausted on
    checkout"); any other ``InvalidRequestError`` is a programming error."""
    return type(exc) is InvalidRequestError and str(exc) == "This connection is closed"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
        return problem_response(
            exc.status,
            exc.slug,
            exc.detail,
            title=exc.title,
            instance=request.url.path,
            headers=exc.headers,
            **exc.extra,
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _validation_errors(exc)
        # A value that matches no alternative of a union (metadata values) fails once per
        # alternative; the telling error is one that is not merely "wrong type".
        telling = [e for e, raw in zip(errors, exc.errors(), strict=True) if not _is_type_mismatch(raw)]
        first = (telling or errors or [{"loc": [], "msg": "invalid request"}])[0]
        where = ".".join(part for part in first["loc"] if not _is_schema_part(part)) or "request"
        return problem_response(
            422,
            "validation-error",
            f"{where}: {first['msg']}",
            title="Request validation failed",
            instance=request.url.path,
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        status = exc.status_code
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(status).phrase
        headers = dict(exc.headers or {})
        if status == 404 and detail == "Not Found":
            detail = f"No route for {request.method} {request.url.path}."
        if status == 405:
            # Every method of the resource, not only those of the first route that matched.
            from service.web.methods import allowed_methods

            methods = allowed_methods(request.app.router.routes, request.scope)
            if methods:
                headers["Allow"] = ", ".join(methods)
            detail = f"{request.method} is not supported here; allowed: {headers.get('Allow', 'none')}."
        return problem_response(
            status, _SLUGS.get(status, "http-error"), detail, instance=request.url.path, headers=headers
        )

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)  # "connection already closed": a lost connection too
    @app.exception_handler(PoolTimeoutError)
    async def _database_down(request: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable: %s", type(exc).__name__)
        return problem_response(
            503,
            "database-unavailable",
            "The database is unavailable; retry shortly.",
            instance=request.url.path,
            headers={"Retry-After": RETRY_AFTER_SECONDS},
        )

    @app.exception_handler(InvalidRequestError)
    async def _pool_gave_up(request: Request, exc: InvalidRequestError) -> JSONResponse:
        if every_pooled_connection_was_closed(exc):
            return await _database_down(request, exc)
        return await _unexpected(request, exc)

    @app.exception_handler(DBAPIError)
    async def _database_error(request: Request, exc: DBAPIError) -> JSONResponse:
        if exc.connection_invalidated:
            return await _database_down(request, exc)
        log.exception("database error on %s %s", request.method, request.url.path)
        return problem_response(500, "internal-error", "An internal error occurred.", instance=request.url.path)

    @app.exception_handler(BotoCoreError)
    @app.exception_handler(ClientError)
    async def _storage_error(request: Request, exc: Exception) -> JSONResponse:
        # S3 calls made through Storage arrive as StorageUnavailable/StorageRejected; this catches
        # the rest (presigning without credentials, a ClientError a caller re-raised). Only what
        # a retry can fix is a 503; anything else is logged with what is missing and is a 500.
        from service.core.storage import storage_failure

        problem = storage_failure(exc, operation=_operation(exc), bucket=None)
        return await _problem(request, problem)

    @app.exception_handler(ValueError)
    async def _value_error(request: Request, exc: ValueError) -> JSONResponse:
        # PostgreSQL text cannot hold NUL; psycopg2 refuses such a parameter before sending it.
        if "NUL (0x00)" in str(exc):
            return problem_response(
                422, "invalid-characters", "A text value contains a NUL character.", instance=request.url.path
            )
        return await _unexpected(request, exc)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(500, "internal-error", "An internal error occurred.", instance=request.url.path)


_BODY_PROBLEMS = {
    "400": "The body could not be parsed (malformed JSON or not UTF-8)",
    "413": "The request body is larger than MAX_REQUEST_BODY_BYTES",
}
_LIMIT_PROBLEM = {
    "429": "Too many requests or uploads in progress for this tenant, or too many failed authentications "
    "from this address (see Retry-After)",
    "503": "The database or object storage is unavailable (see Retry-After)",
}


def document_problem_responses(app: FastAPI) -> None:
    """Add the answers every operation can give but no route declares to the OpenAPI schema:
    400/413 where a body is read; 429 and 503 on the /v1 API (limits, and the database or
    storage it depends on)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        for path, operations in schema.get("paths", {}).items():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                extra = dict(_BODY_PROBLEMS) if "requestBody" in operation else {}
                if path.startswith("/v1/"):
                    extra.update(_LIMIT_PROBLEM)
                for status, description in extra.items():
                    responses.setdefault(status, {"description": description, "content": {PROBLEM_JSON: {}}})
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
