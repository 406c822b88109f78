"""OIDC bearer tokens (e.g. Cognito): signature checked against the issuer's JWKS with PyJWT.

A token's tenant lives in a namespace of its own: ``jwt-`` and a digest of the issuer and the
tenant claim (``sub`` by default). A token whose claim says ``alice`` is not the API-key owner
``alice``, and two issuers' ``alice`` are two tenants. API-key owners cannot start with ``jwt-``.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from datetime import UTC, datetime

import jwt

from service.auth.principal import Principal
from service.core.settings import Settings

log = logging.getLogger("service.auth")

_clients: dict[str, jwt.PyJWKClient] = {}
_lock = threading.Lock()


def _jwks_client(url: str) -> jwt.PyJWKClient:
    client = _clients.get(url)
    if client is None:
        with _lock:
            client = _clients.setdefault(url, jwt.PyJWKClient(url, cache_keys=True, lifespan=600, timeout=3))
    return client


JWT_TENANT_PREFIX = "jwt-"


def jwt_tenant(issuer: str, claim: str) -> str:
    """The tenant of a token from ``issuer`` whose tenant claim is ``claim``."""
    digest = hashlib.sha256(f"{issuer}\n{claim}".encode()).hexdigest()
    return f"{JWT_TENANT_PREFIX}{digest[:40]}"


def authenticate_jwt(token: str, settings: Settings) -> Principal | None:
    """The principal for a valid token, else None (the reason is logged, never returned)."""
    if not settings.jwt_enabled:
        return None
    issuer, jwks_url = settings.jwt_issuer, settings.jwt_jwks_url
    if issuer is None or jwks_url is None:  # not reached: jwt_enabled means both are set
        return None
    try:
        header = jwt.get_unverified_header(token)
        if header.get("alg") not in settings.jwt_algorithms:
            log.info("jwt rejected: algorithm %r not allowed", header.get("alg"))
            return None
        signing_key = _jwks_client(jwks_url).get_signing_key_from_jwt(token)
        claims = jwt.decode(
            token,
            signing_key.key,
            algorithms=settings.jwt_algorithms,
            audience=settings.jwt_audience,
            issuer=issuer,
            leeway=settings.jwt_leeway_seconds,
            # The audience is required (settings refuse JWT without one) and always verified.
            options={"require": ["exp", "iat", "iss", "sub", "aud"], "verify_aud": True, "verify_iat": True},
        )
    except (jwt.PyJWTError, ValueError) as exc:
        log.info("jwt rejected: %s", type(exc).__name__)
        return None
    issued, expires = claims["iat"], claims["exp"]
    if not isinstance(issued, int | float) or expires - issued > settings.jwt_max_lifetime_seconds:
        log.info("jwt rejected: lifetime above JWT_MAX_LIFETIME_SECONDS (%s)", settings.jwt_max_lifetime_seconds)
        return None
    claim = claims.get(settings.jwt_tenant_claim)
    if not isinstance(claim, str) or not claim or len(claim) > 1024:
        log.info("jwt rejected: tenant claim %r missing or invalid", settings.jwt_tenant_claim)
        return None
    return Principal(
        tenant=jwt_tenant(issuer, claim),
        subject=str(claims["sub"]),
        method="jwt",
        expires_at=datetime.fromtimestamp(int(expires), tz=UTC),  # a browser session ends with it
    )
