"""Browser sessions: a random token in an HttpOnly, SameSite=Strict cookie; the server keeps only
its SHA-256, so ``DELETE /v1/auth/session`` (deleting the row) really ends the session.

Cookies ride along with every same-site request, so a cookie-authenticated request that changes
state must also name an allowed ``Origin`` (CSRF defence in depth behind SameSite=Strict).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from fastapi import Request, Response
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from service.auth.principal import Principal
from service.browser.models import BrowserSession
from service.config import Settings
from service.errors import ProblemError
from service.timeutil import as_utc, utcnow

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Forbidden(ProblemError):
    def __init__(self, detail: str) -> None:
        super().__init__(403, "forbidden", detail)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(*, session: Session, settings: Settings, principal: Principal) -> tuple[str, datetime]:
    """Store a new session for ``principal``; returns the cookie token (shown once) and expiry."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    expires = now + timedelta(seconds=settings.session_ttl_seconds)
    # Expired rows of this tenant go now, so the table stays small without a separate job.
    session.execute(
        delete(BrowserSession).where(BrowserSession.owner == principal.tenant, BrowserSession.expires_at < now)
    )
    session.add(
        BrowserSession(
            token_hash=_hash(token),
            owner=principal.tenant,
            subject=principal.subject[:255],
            created_at=now,
            expires_at=expires,
        )
    )
    session.commit()
    return token, expires


def authenticate_session(session: Session, token: str) -> tuple[Principal, datetime] | None:
    if not token or len(token) > 256:
        return None
    row = session.execute(
        select(BrowserSession.owner, BrowserSession.expires_at).where(BrowserSession.token_hash == _hash(token))
    ).first()
    if row is None or as_utc(row.expires_at) <= utcnow():
        return None
    return Principal(tenant=row.owner, subject="session", method="session"), as_utc(row.expires_at)


def end_session(session: Session, token: str) -> None:
    session.execute(delete(BrowserSession).where(BrowserSession.token_hash == _hash(token)))
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
    """Refuse a cookie-authenticated state change that does not come from an allowed origin."""
    if request.method in SAFE_METHODS:
        return
    origin = request.headers.get("origin")
    if not origin or origin.lower() not in allowed_origins(settings):
        raise Forbidden(
            "Cookie-authenticated requests that change data must come from an allowed origin; "
            "send 'Authorization: Bearer <token>' from other clients."
        )


def cookie_is_secure(request: Request, settings: Settings) -> bool:
    if settings.session_cookie_secure is not None:
        return settings.session_cookie_secure
    return request.url.scheme == "https" or settings.public_base_url.lower().startswith("https://")


def set_cookie(response: Response, *, request: Request, settings: Settings, token: str, expires: datetime) -> None:
    response.set_cookie(
        settings.session_cookie_name,
        token,
        max_age=settings.session_ttl_seconds,
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
