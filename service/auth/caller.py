"""Who is calling: the one dependency of the API's routes (``CallerDep``), resolving a bearer API
key or JWT, else a browser session cookie, with the rate limits of the tenant and of failed
authentications (docs/adr/0001-one-dependency-per-route.md)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import State

from service.auth.api_keys import authenticate_api_key, cached_api_key, looks_like_api_key
from service.auth.limits import check_auth_failures, enforce_rate_limit, record_auth_failure
from service.auth.principal import Principal
from service.auth.sessions import authenticate_session, require_allowed_origin
from service.core.db import new_session, session_scope, single_statement_connection
from service.core.problems import Unauthorized
from service.core.settings import Settings
from service.core.storage import Storage


class Caller:
    """The authenticated caller of a request and what its route needs to serve it."""

    __slots__ = ("_storage", "principal", "settings")

    def __init__(self, *, principal: Principal, settings: Settings) -> None:
        self.principal = principal
        self.settings = settings
        self._storage: Storage | None = None

    @property
    def storage(self) -> Storage:
        # Built on first use: a read by id never talks to S3, so it never needs the S3 client
        # (whose creation is the slowest part of a cold start's first request).
        if self._storage is None:
            self._storage = Storage.from_settings(self.settings)
        return self._storage

    def session(self) -> Connection:
        """A new database session (service/core/db.py); use it as
        ``with caller.session() as session:`` and commit what must persist."""
        return new_session(self.settings)

    def connection(self) -> AbstractContextManager[Connection]:
        """A connection for one statement: ``with caller.connection() as connection:``."""
        return single_statement_connection(self.settings)


def _bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _verify_api_key(settings: Settings, token: str) -> Principal | None:
    # One autocommitted SELECT (and, once a minute, an UPDATE), not BEGIN, SELECT and ROLLBACK.
    with single_statement_connection(settings) as connection:
        return authenticate_api_key(connection, token)


def _verify_session_cookie(settings: Settings, cookie: str) -> Principal | None:
    with session_scope(settings) as session:
        found = authenticate_session(session, cookie)
    return found[0] if found else None


def _verify_jwt(token: str, settings: Settings) -> Principal | None:
    # Imported on first use: deployments without JWT never load PyJWT and cryptography.
    from service.auth.jwt_tokens import authenticate_jwt

    return authenticate_jwt(token, settings)


async def authenticate(request: Request, settings: Settings) -> Principal:
    """The request's principal: a bearer API key or JWT, else a browser session cookie.

    Credentials that are presented and refused count against the client's address (429 once it
    has used up AUTH_FAILURES_PER_MINUTE); requests without any credentials do not.
    """
    client = request.scope.get("client")
    address = client[0] if client else "unknown"
    state = request.app.state
    try:
        return await _authenticate(request, settings, state, address)
    except Unauthorized as refused:
        if refused.presented:
            record_auth_failure(state, settings, address)
        raise


async def _authenticate(request: Request, settings: Settings, state: State, address: str) -> Principal:
    token = _bearer_token(request)
    if token is not None:
        check_auth_failures(state, settings, address)
        if looks_like_api_key(token):
            # A key verified within the last seconds needs no database round trip.
            principal = cached_api_key(token) or await run_in_threadpool(_verify_api_key, settings, token)
        else:
            principal = await run_in_threadpool(_verify_jwt, token, settings)
        if principal is None:
            raise Unauthorized("The credentials are invalid, expired or revoked.", presented=True)
        return principal
    cookie = request.cookies.get(settings.session_cookie_name)
    if not cookie:
        raise Unauthorized("Send an API key or token as 'Authorization: Bearer <token>'.")
    check_auth_failures(state, settings, address)
    # Browser session: same-site cookie, and state changes must name an allowed Origin.
    principal = await run_in_threadpool(_verify_session_cookie, settings, cookie)
    if principal is None:
        raise Unauthorized("The session has expired or was signed out; sign in again.", presented=True)
    require_allowed_origin(request, settings)
    return principal


async def get_caller(request: Request) -> Caller:
    app_state = request.app.state
    settings: Settings = app_state.settings
    principal = await authenticate(request, settings)
    request.state.principal = principal
    enforce_rate_limit(app_state, settings, principal.tenant)
    return Caller(principal=principal, settings=settings)


CallerDep = Annotated[Caller, Depends(get_caller)]
