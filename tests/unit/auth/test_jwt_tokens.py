"""OIDC bearer tokens: what a valid token proves (a tenant of its own per issuer and claim), and
every way a token is refused. The issuer's key set is a key made here."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from types import SimpleNamespace

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from service.auth import jwt_tokens
from service.auth.jwt_tokens import JWT_TENANT_PREFIX, authenticate_jwt, jwt_tenant
from service.auth.principal import Principal, valid_tenant
from service.core.settings import Settings

ISSUER = "https://issuer.example/pool"
AUDIENCE = "recordings"


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def jwt_settings(key, monkeypatch) -> Settings:
    """JWT on, with the issuer's key set answering with ``key``'s public half."""
    jwks = SimpleNamespace(get_signing_key_from_jwt=lambda token: SimpleNamespace(key=key.public_key()))
    monkeypatch.setattr(jwt_tokens, "_jwks_client", lambda url: jwks)
    return Settings(jwt_issuer=ISSUER, jwt_jwks_url=f"{ISSUER}/jwks", jwt_audience=AUDIENCE)


def token(key, *, algorithm: str = "RS256", drop: tuple[str, ...] = (), **claims) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "user-1", "iat": now, "exp": now + 600, **claims}
    for name in drop:
        body.pop(name)
    return jwt.encode(body, key, algorithm=algorithm)


def test_a_valid_token_is_a_tenant_of_its_own(key, jwt_settings):
    expires = int(time.time()) + 600
    principal = authenticate_jwt(token(key, exp=expires), jwt_settings)
    assert principal == Principal(
        tenant=jwt_tenant(ISSUER, "user-1"),
        subject="user-1",
        method="jwt",
        expires_at=datetime.fromtimestamp(expires, tz=UTC),
    )


def test_the_tenant_claim_is_configurable(key, jwt_settings):
    configured = jwt_settings.model_copy(update={"jwt_tenant_claim": "org"})
    principal = authenticate_jwt(token(key, org="acme"), configured)
    assert principal.tenant == jwt_tenant(ISSUER, "acme")
    assert principal.subject == "user-1"


def test_an_expired_token_passes_only_within_the_leeway(key, jwt_settings):
    now = int(time.time())
    assert authenticate_jwt(token(key, iat=now - 600, exp=now - 10), jwt_settings) is not None  # leeway 30 s
    assert authenticate_jwt(token(key, iat=now - 600, exp=now - 120), jwt_settings) is None


@pytest.mark.parametrize(
    "claims",
    [
        {"aud": "another-api"},
        {"iss": "https://elsewhere.example"},
        {"nbf": int(time.time()) + 3600},
        {"sub": ""},
    ],
)
def test_tokens_for_someone_else_or_not_yet_valid_are_refused(key, jwt_settings, claims):
    assert authenticate_jwt(token(key, **claims), jwt_settings) is None


@pytest.mark.parametrize("claim", ["exp", "iat", "iss", "sub", "aud"])
def test_every_required_claim_must_be_there(key, jwt_settings, claim):
    assert authenticate_jwt(token(key, drop=(claim,)), jwt_settings) is None


def test_a_token_living_longer_than_allowed_is_refused(key, jwt_settings):
    now = int(time.time())
    assert authenticate_jwt(token(key, iat=now, exp=now + 3600), jwt_settings) is not None
    assert authenticate_jwt(token(key, iat=now, exp=now + 3601), jwt_settings) is None


@pytest.mark.parametrize("tenant", [None, "", 5, "x" * 1025])
def test_a_missing_or_unusable_tenant_claim_is_refused(key, jwt_settings, tenant):
    configured = jwt_settings.model_copy(update={"jwt_tenant_claim": "org"})
    claims = {} if tenant is None else {"org": tenant}
    assert authenticate_jwt(token(key, **claims), configured) is None


def test_another_key_or_another_algorithm_is_refused(key, jwt_settings):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert authenticate_jwt(token(other), jwt_settings) is None
    # An HMAC token "signed" with the public key must never be read as valid.
    assert authenticate_jwt(token("a-shared-secret-of-32-bytes-or-more!", algorithm="HS256"), jwt_settings) is None
    unsigned = jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "sub": "user-1"}, None, algorithm="none")
    assert authenticate_jwt(unsigned, jwt_settings) is None
    assert authenticate_jwt("not.a.jwt", jwt_settings) is None


def test_without_an_issuer_jwt_is_off(key):
    assert not Settings().jwt_enabled
    assert authenticate_jwt(token(key), Settings()) is None


def test_jwt_tenants_are_per_issuer_and_claim_and_never_an_api_key_owner():
    alice = jwt_tenant(ISSUER, "alice")
    assert alice == jwt_tenant(ISSUER, "alice")
    assert alice != jwt_tenant("https://other.example", "alice")
    assert alice != jwt_tenant(ISSUER, "alice2")
    assert alice.startswith(JWT_TENANT_PREFIX)
    assert valid_tenant(alice)
    assert len(alice) == len(JWT_TENANT_PREFIX) + 40


@pytest.mark.parametrize("tenant", ["alice", "a", "Team.A_1@x+y-z", "x" * 128])
def test_valid_tenants(tenant):
    assert valid_tenant(tenant)


@pytest.mark.parametrize("tenant", ["", "-alice", ".alice", "a/b", "a b", "ä", "x" * 129, "alice\n"])
def test_invalid_tenants(tenant):
    assert not valid_tenant(tenant)
