"""OIDC bearer tokens (e.g. Cognito): signature checked against the issuer's JWKS with PyJWT."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime

import jwt

from service.auth.principal import Principal, valid_tenant
from service.config import Settings

log = logging.getLogger("service.auth")

_clients: dict[str, jwt.PyJWKClient] = {}
_lock = threading.Lock()


def _jwks_client(url: str) -> jwt.PyJWKClient:
    client = _clients.get(url)
    if client is None:
        with _lock:
            client = _clients.setdefault(url, jwt.PyJWKClient(url, cache_keys=True, lifespan=600, timeout=3))
    return client


def authenticate_jwt(token: str, settings: Settings) -> Principal | None:
    """The principal for a valid token, else None (the reason is logged, never returned)."""
    if not settings.jwt_enabled:
        return None
    try:
        header = jwt.get_unverified_header(token)
        if header.get("alg") not in settings.jwt_algorithms:
            log.info("jwt rejected: algorithm %r not allowed", header.get("alg"))
            return None
        signing_key = _jwks_client(settings.jwt_jwks_url).get_signing_key_from_jwt(token)
        claims = jwt.decode(
            token,
            signing_key.key,
            algorithms=settings.jwt_algorithms,
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            leeway=settings.jwt_leeway_seconds,
            options={"require": ["exp", "iss", "sub"], "verify_aud": settings.jwt_audience is not None},
        )
    except (jwt.PyJWTError, ValueError) as exc:
        log.info("jwt rejected: %s", type(exc).__name__)
        return None
    tenant = claims.get(settings.jwt_tenant_claim)
    if not isinstance(tenant, str) or not valid_tenant(tenant):
        log.info("jwt rejected: tenant claim %r missing or invalid", settings.jwt_tenant_claim)
        return None
    expires = datetime.fromtimestamp(int(claims["exp"]), tz=UTC)
    return Principal(tenant=tenant, subject=str(claims["sub"]), method="jwt", expires_at=expires)
