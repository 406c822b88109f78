"""FastAPI dependencies as Annotated aliases: SettingsDep, SessionDep, StorageDep, PrincipalDep."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from service.auth.api_keys import authenticate_api_key, cached_api_key, looks_like_api_key
from service.auth.jwt_tokens import authenticate_jwt
from service.auth.principal import Principal
from service.browser.sessions import authenticate_session, require_allowed_origin
from service.config import Settings
from service.db import session_factory
from service.errors import Unauthorized
from service.limits import enforce_rate_limit
from service.storage import Storage


# Dependencies that do no I/O are async: a sync dependency costs a trip through the threadpool.
async def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]


async def get_session(settings: SettingsDep) -> AsyncIterator[Session]:
    # Creating a session does no I/O (it connects on first use); closing one that used a
    # connection returns it to the pool with a ROLLBACK, so that part runs in the threadpool.
    session = session_factory(settings)()
    try:
        yield session
    finally:
        if session.in_transaction():
            await run_in_threadpool(session.close)
        else:
            session.close()


SessionDep = Annotated[Session, Depends(get_session)]


async def get_storage(settings: SettingsDep) -> Storage:
    return Storage.from_settings(settings)


StorageDep = Annotated[Storage, Depends(get_storage)]


def _bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def get_principal(request: Request, settings: SettingsDep, session: SessionDep) -> Principal:
    token = _bearer_token(request)
    if token is not None:
        if looks_like_api_key(token):
            principal = cached_api_key(token) or await run_in_threadpool(authenticate_api_key, session, token)
        else:
            principal = await run_in_threadpool(authenticate_jwt, token, settings)
        if principal is None:
            raise Unauthorized("The credentials are invalid, expired or revoked.")
    else:
        cookie = request.cookies.get(settings.session_cookie_name)
        if not cookie:
            raise Unauthorized("Send an API key or token as 'Authorization: Bearer <token>'.")
        # Browser session: same-site cookie, and state changes must name an allowed Origin.
        authenticated = await run_in_threadpool(authenticate_session, session, cookie)
        if authenticated is None:
            raise Unauthorized("The session has expired or was signed out; sign in again.")
        require_allowed_origin(request, settings)
        principal = authenticated[0]
    request.state.principal = principal
    enforce_rate_limit(request.app.state, settings, principal.tenant)
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]
