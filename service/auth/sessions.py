"""Browser sessions: a random token in an HttpOnly, SameSite=Strict cookie; the server keeps only
its SHA-256, so ``DELETE /v1/auth/session`` (deleting the row) really ends the session.

Cookies ride along with every same-site request, so a cookie-authenticated request that changes
state must also name an allowed ``Origin`` (CSRF defence in depth behind SameSite=Strict).
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from fastapi import Request, Response
from sqlalchemy import Connection, delete, insert, select

from service.auth.principal import Principal
from service.auth.session_models import browser_sessions
from service.core.clock import as_utc, utcnow
from service.core.db import rowcount
from service.core.problems import ProblemError, Unauthorized
from service.core.settings import Settings

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Forbidden(ProblemError):
    def __init__(self, detail: str) -> None:
        super().__init__(403, "forbidden", detail)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(*, session: Connection, settings: Settings, principal: Principal) -> tuple[str, datetime]:
    """Store a new session for ``principal``; returns the cookie token (shown once) and expiry.

    The session remembers its credential: one made with an API key ends when the key is revoked
    (checked here against the database, so a key revoked a moment ago cannot mint one); one made
    with a JWT ends no later than the token.
    """
    from service.auth.api_keys import lock_active_key

    token = secrets.token_urlsafe(32)
    now = utcnow()
    expires = now + timedelta(seconds=settings.session_ttl_seconds)
    api_key_id = None
    if principal.method == "api_key":
        api_key_id = lock_active_key(session, principal)
        if api_key_id is None:
            session.rollback()
            raise Unauthorized("The credentials are invalid, expired or revoked.")
    if principal.expires_at is not None:
        expires = min(expires, principal.expires_at)
        if expires <= now:
            raise Unauthorized("The token has expired.")
    # Expired rows of this tenant go now, so the table stays small between reaper runs.
    session.execute(
        delete(browser_sessions).where(
            browser_sessions.c.owner == principal.tenant, browser_sessions.c.expires_at < now
        )
    )
    session.execute(
        insert(browser_sessions).values(
            token_hash=_hash(token),
            owner=principal.tenant,
            subject=principal.subject[:255],
            created_at=now,
            expires_at=expires,
            api_key_id=api_key_id,
        )
    )
    session.commit()
    return token, expires


def end_sessions_of_key(session: Connection, api_key_id: uuid.UUID) -> int:
    """Delete the sessions made with this API key (the caller commits); returns how many."""
    result = session.execute(delete(browser_sessions).where(browser_sessions.c.api_key_id == api_key_id))
    return rowcount(result)


def delete_expired_sessions(session: Connection, *, now: datetime | None = None) -> int:
    """Remove sessions past their expiry (the reaper calls this); returns how many."""
    removed = rowcount(
        session.execute(delete(browser_sessions).where(browser_sessions.c.expires_at <= (now or utcnow())))
    )
    session.commit()
    return removed


def authenticate_session(session: Connection, token: str) -> tuple[Principal, datetime] | None:
    if not token or len(token) > 256:
        return None
    row = session.execute(
        select(browser_sessions.c.owner, browser_sessions.c.expires_at).where(
            browser_sessions.c.token_hash == _hash(token)
        )
    ).first()
    if row is None:
        return None
    owner, expires_at = row
    expires_at = as_utc(expires_at)
    if expires_at <= utcnow():
        return None
    return Principal(tenant=owner, subject="session", method="session"), expires_at


def end_session(session: Connection, token: str) -> None:
    session.execute(delete(browser_sessions).where(browser_sessions.c.token_hash == _hash(token)))
    session.commit()


def _origin_of(url: str) -> str | None:
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def allowed_origins(settings: Settings) -> set[str]:
    origins = {origin for origin in (_origin_of(item) for item in settings.cors_origins) if origin}
    own = _origin_of(settings.public_base_url)
    if own:
        origins.add(own)
    return origins


def require_allowed_origin(request: Request, settings: Settings) -> None:
    """Refuse a cookie-authenticated state change that does not prove it comes from an allowed
    origin: an allowed ``Origin``, or (when a browser sends no Origin, as on a same-origin GET)
    ``Sec-Fetch-Site: same-origin``. Pages cannot forge either header."""
    if request.method in SAFE_METHODS:
        return
    check_origin(request, settings)


def check_origin(request: Request, settings: Settings) -> None:
    origin = request.headers.get("origin")
    if origin is not None and origin != "null":
        if origin.lower() in allowed_origins(settings):
            return
        raise Forbidden(
            f"Origin {origin!r} may not change data with a session cookie; allowed origins are set by "
            "CORS_ORIGINS and PUBLIC_BASE_URL."
        )
    if request.headers.get("sec-fetch-site") == "same-origin":
        return
    raise Forbidden(
        "Requests that change data with a session cookie must prove their origin (an 'Origin' header of "
        "an allowed origin, or 'Sec-Fetch-Site: same-origin' as browsers send); other clients send "
        "'Authorization: Bearer <token>'."
    )


async def require_origin_proof(request: Request) -> None:
    """Route dependency for a GET that changes data (Companion's ``/s3/params`` creates a
    recording): a caller signed in by cookie alone must prove its origin as for a POST."""
    settings: Settings = request.app.state.settings
    if "authorization" not in request.headers and request.cookies.get(settings.session_cookie_name):
        check_origin(request, settings)


def cookie_is_secure(request: Request, settings: Settings) -> bool:
    if settings.session_cookie_secure is not None:
        return settings.session_cookie_secure
    return request.url.scheme == "https" or settings.public_base_url.lower().startswith("https://")


def set_cookie(response: Response, *, request: Request, settings: Settings, token: str, expires: datetime) -> None:
    response.set_cookie(
        settings.session_cookie_name,
        token,
        max_age=max(1, round((expires - utcnow()).total_seconds())),
        expires=expires,
        path="/",
        secure=cookie_is_secure(request, settings),
        httponly=True,
        samesite="strict",
    )


def clear_cookie(response: Response, *, request: Request, settings: Settings) -> None:
    response.delete_cookie(
        settings.session_cookie_name,
        path="/",
        secure=cookie_is_secure(request, settings),
        httponly=True,
        samesite="strict",
    )
