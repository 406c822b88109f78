"""Bearer authentication: API keys and OIDC JWTs verified against a JWKS served over HTTP."""

import json
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from service.api.app import create_app
from service.auth.api_keys import revoke_api_key
from service.auth.jwt_tokens import jwt_tenant
from service.core.db import session_scope
from tests.conftest import make_settings, new_tenant

ISSUER = "https://issuer.test/pool"
AUDIENCE = "recordings-api"


def test_missing_or_malformed_credentials_are_401_with_challenge(client):
    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer "}, {"Authorization": "Bearer rk_x"}):
        response = client.get("/v1/recordings", headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.headers["content-type"] == "application/problem+json"


def test_wrong_secret_for_a_real_prefix_is_401(client, alice):
    prefix = alice.token.split("_")[1]
    response = client.get("/v1/recordings", headers={"Authorization": f"Bearer rk_{prefix}_{'x' * 43}"})
    assert response.status_code == 401


def test_revoked_key_is_401(client, alice, settings):
    assert client.get("/v1/recordings", headers=alice.headers).status_code == 200
    with session_scope(settings) as session:
        assert revoke_api_key(session, prefix=alice.token.split("_")[1])
    assert client.get("/v1/recordings", headers=alice.headers).status_code == 401


def test_key_is_stored_hashed(client, alice, settings):
    from sqlalchemy import select

    from service.auth.models import api_keys

    with session_scope(settings) as session:
        row = session.execute(select(api_keys)).one()
    secret = alice.token.split("_", 2)[2]
    assert secret not in (row.secret_hash, row.prefix)
    assert len(row.secret_hash) == 64


def test_an_uncached_key_costs_one_autocommitted_select_and_is_marked_used_once_a_minute(alice, settings):
    """No BEGIN and ROLLBACK around the lookup (autocommit), and last_used_at written at most
    once a minute, in its own autocommitted UPDATE."""
    from sqlalchemy import event, select

    from service.auth import api_keys
    from service.auth.caller import _verify_api_key
    from service.auth.models import api_keys as keys_table
    from service.core.db import get_engine

    sent: list[tuple[str, bool]] = []

    def record(connection, _cursor, statement, *_):
        autocommit = bool(getattr(connection.connection.dbapi_connection, "autocommit", False))
        sent.append((statement.split(None, 1)[0], autocommit))

    engine = get_engine(settings)
    event.listen(engine, "before_cursor_execute", record)
    try:
        verified = []
        for _ in range(2):
            api_keys._verified.clear()  # as in another process, or after VERIFIED_CACHE_SECONDS
            principal = _verify_api_key(settings, alice.token)
            assert principal is not None
            assert principal.tenant == "alice"
            verified.append(list(sent))
            sent.clear()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert verified == [[("SELECT", True), ("UPDATE", True)], [("SELECT", True)]]
    with session_scope(settings) as session:
        (last_used,) = session.execute(select(keys_table.c.last_used_at)).one()
    assert last_used is not None


# JWT ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def signing_keys():
    return {kid: rsa.generate_private_key(public_exponent=65537, key_size=2048) for kid in ("k1", "k2")}


@pytest.fixture(scope="module")
def jwks_url(signing_keys):
    keys = []
    for kid, private in signing_keys.items():
        if kid == "k2":
            continue  # k2 signs tokens but is not published: "unknown kid"
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
        keys.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
    document = json.dumps({"keys": keys}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(document)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    server.shutdown()


@pytest.fixture
def jwt_client(migrated, s3_endpoint, jwks_url):
    from fastapi.testclient import TestClient

    settings = make_settings(
        migrated,
        s3_endpoint,
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
        jwt_jwks_url=jwks_url,
        jwt_tenant_claim="custom:tenant",
    )
    with TestClient(create_app(settings)) as client:
        yield client


def _token(signing_keys, kid="k1", alg="RS256", **overrides):
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "user-1", "custom:tenant": "acme", "iat": now, "exp": now + 300}
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, signing_keys[kid], algorithm=alg, headers={"kid": kid})


def test_valid_jwt_acts_for_the_tenant_claim(jwt_client, signing_keys):
    token = _token(signing_keys)
    created = jwt_client.post(
        "/v1/recordings",
        json={"filename": "a.wav", "content_type": "audio/wav", "size_bytes": 5},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert created.status_code == 201, created.text
    assert created.json()["recording"]["key"].startswith(f"{jwt_tenant(ISSUER, 'acme')}/")


def test_a_jwt_tenant_never_reads_the_api_key_owner_of_the_same_name(jwt_client, signing_keys, settings):
    # GIVEN the API-key owner "acme" has a recording
    acme_key = new_tenant(settings, "acme")
    mine = jwt_client.post(
        "/v1/recordings",
        json={"filename": "a.wav", "content_type": "audio/wav", "size_bytes": 5},
        headers=acme_key.headers,
    ).json()["recording"]
    # WHEN a token whose tenant claim is "acme" lists and reads
    token = {"Authorization": f"Bearer {_token(signing_keys)}"}
    listed = jwt_client.get("/v1/recordings", headers=token)
    read = jwt_client.get(f"/v1/recordings/{mine['id']}", headers=token)
    # THEN it sees nothing of the API-key owner's
    assert listed.status_code == 200
    assert all(not item["key"].startswith("acme/") for item in listed.json()["items"])
    assert mine["id"] not in {item["id"] for item in listed.json()["items"]}
    assert read.status_code == 404


def test_api_keys_cannot_be_made_for_the_jwt_namespace(settings):
    with pytest.raises(ValueError, match="jwt-"):
        new_tenant(settings, jwt_tenant(ISSUER, "acme"))


def test_jwt_needs_an_audience(migrated, s3_endpoint, jwks_url):
    with pytest.raises(ValueError, match="JWT_AUDIENCE"):
        make_settings(migrated, s3_endpoint, jwt_issuer=ISSUER, jwt_jwks_url=jwks_url)


def _public_pem(signing_keys):
    return (
        signing_keys["k1"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def _unsigned(claims_token: str) -> str:
    _header, payload, _ = claims_token.split(".")
    none_header = jwt.utils.base64url_encode(json.dumps({"alg": "none", "kid": "k1"}).encode()).decode()
    return f"{none_header}.{payload}."


@pytest.mark.parametrize(
    "case",
    [
        "wrong-issuer",
        "wrong-audience",
        "expired",
        "not-yet-valid",
        "alg-none",
        "hs256-with-public-key",
        "unknown-kid",
        "missing-tenant",
        "missing-audience",
        "missing-issued-at",
        "lifetime-above-maximum",
        "garbage",
    ],
)
def test_invalid_jwts_are_401(jwt_client, signing_keys, case):
    now = int(time.time())
    if case == "wrong-issuer":
        token = _token(signing_keys, iss="https://evil.test")
    elif case == "wrong-audience":
        token = _token(signing_keys, aud="someone-else")
    elif case == "expired":
        token = _token(signing_keys, exp=now - 3600, iat=now - 7200)
    elif case == "not-yet-valid":
        token = _token(signing_keys, nbf=now + 3600)
    elif case == "alg-none":
        token = _unsigned(_token(signing_keys))
    elif case == "hs256-with-public-key":
        header = jwt.utils.base64url_encode(json.dumps({"alg": "HS256", "kid": "k1", "typ": "JWT"}).encode())
        body = jwt.utils.base64url_encode(
            json.dumps({"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "custom:tenant": "acme", "exp": now + 300}).encode()
        )
        import hashlib
        import hmac

        signature = hmac.new(_public_pem(signing_keys), header + b"." + body, hashlib.sha256).digest()
        token = (header + b"." + body + b"." + jwt.utils.base64url_encode(signature)).decode()
    elif case == "unknown-kid":
        token = _token(signing_keys, kid="k2")
    elif case == "missing-tenant":
        token = _token(signing_keys, **{"custom:tenant": None})
    elif case == "missing-audience":
        token = _token(signing_keys, aud=None)
    elif case == "missing-issued-at":
        token = _token(signing_keys, iat=None)
    elif case == "lifetime-above-maximum":  # the default maximum is one hour
        token = _token(signing_keys, iat=now - 60, exp=now + 3600)
    else:
        token = "not.a.jwt"
    response = jwt_client.get("/v1/recordings", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401, case
    assert response.headers["content-type"] == "application/problem+json"


def test_a_session_made_from_a_jwt_ends_no_later_than_the_token(jwt_client, signing_keys):
    expires = int(time.time()) + 120
    signed_in = jwt_client.post(
        "/v1/auth/session", headers={"Authorization": f"Bearer {_token(signing_keys, exp=expires)}"}
    )
    assert signed_in.status_code == 200, signed_in.text
    assert datetime.fromisoformat(signed_in.json()["expires_at"]).timestamp() == expires
    max_age = int(signed_in.headers["set-cookie"].split("Max-Age=")[1].split(";")[0])
    assert 0 < max_age <= 120
    assert jwt_client.get("/v1/auth/session").json()["expires_at"] == signed_in.json()["expires_at"]


def test_an_expired_jwt_cannot_make_a_session(jwt_client, signing_keys):
    token = _token(signing_keys, exp=int(time.time()) - 5)  # inside the leeway: still verifies
    refused = jwt_client.post("/v1/auth/session", headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 401
    assert "set-cookie" not in refused.headers
