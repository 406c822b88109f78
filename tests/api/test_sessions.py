"""Browser sessions: cookie issued for a bearer credential, revocable, CSRF-safe."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, update

from service.auth.session_models import browser_sessions
from service.core.clock import utcnow
from service.core.db import session_scope

OWN_ORIGIN = "http://127.0.0.1:8000"  # the settings' PUBLIC_BASE_URL
BODY = {"filename": "a.wav", "content_type": "audio/wav", "size_bytes": 10}


def sign_in(client, tenant):
    response = client.post("/v1/auth/session", headers=tenant.headers)
    assert response.status_code == 200, response.text
    return response


def test_sign_in_sets_an_httponly_strict_expiring_cookie(client, alice, settings):
    response = sign_in(client, alice)
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{settings.session_cookie_name}=")
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Max-Age=28800" in cookie
    assert "Secure" not in cookie  # plain HTTP here
    assert response.json()["tenant"] == "alice"
    assert client.get("/v1/auth/session").json()["tenant"] == "alice"
    assert client.get("/v1/recordings").status_code == 200


def test_cookie_is_secure_over_https(app, alice):
    from fastapi.testclient import TestClient

    with TestClient(app, base_url="https://testserver") as client:
        assert "Secure" in sign_in(client, alice).headers["set-cookie"]


def test_wrong_token_gets_401_and_no_cookie(client):
    response = client.post("/v1/auth/session", headers={"Authorization": "Bearer rk_abc_wrong"})
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert "set-cookie" not in response.headers
    assert client.get("/v1/recordings").status_code == 401


def test_a_session_cannot_mint_another_session(client, alice):
    sign_in(client, alice)
    assert client.post("/v1/auth/session", headers={"Origin": OWN_ORIGIN}).status_code == 401


def test_cookie_state_changes_need_an_allowed_origin(client, alice):
    sign_in(client, alice)
    for headers in ({}, {"Origin": "https://evil.example"}, {"Origin": "null"}):
        refused = client.post("/v1/recordings", json=BODY, headers=headers)
        assert refused.status_code == 403, headers
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["type"] == "/problems/forbidden"
    assert client.get("/v1/recordings").json()["items"] == []  # nothing was created
    assert client.post("/v1/recordings", json=BODY, headers={"Origin": OWN_ORIGIN}).status_code == 201


def test_bearer_requests_need_no_origin(client, alice):
    response = client.post("/v1/recordings", json=BODY, headers={**alice.headers, "Origin": "https://other.example"})
    assert response.status_code == 201


def test_sign_out_revokes_the_session_server_side(client, alice):
    sign_in(client, alice)
    token = client.cookies.get("recordings_session")
    assert client.delete("/v1/auth/session", headers={"Origin": OWN_ORIGIN}).status_code == 204
    # Even a copy of the old cookie no longer works.
    client.cookies.set("recordings_session", token)
    assert client.get("/v1/recordings").status_code == 401
    assert client.get("/v1/auth/session").status_code == 401


def test_cross_origin_sign_out_is_refused(client, alice):
    sign_in(client, alice)
    assert client.delete("/v1/auth/session", headers={"Origin": "https://evil.example"}).status_code == 403
    assert client.get("/v1/auth/session").status_code == 200


def test_expired_session_is_refused(client, alice, settings):
    sign_in(client, alice)
    with session_scope(settings) as session:
        session.execute(update(browser_sessions).values(expires_at=utcnow() - timedelta(seconds=1)))
        session.commit()
    response = client.get("/v1/recordings")
    assert response.status_code == 401
    assert "sign in again" in response.json()["detail"]


PARAMS = {"filename": "memo.wav", "type": "audio/wav"}


def test_signing_an_upload_with_a_cookie_needs_proof_of_origin(client, alice):
    # GET /v1/s3/params creates a recording: a cookie alone is not enough.
    sign_in(client, alice)
    for headers in (
        {},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "https://evil.example"},
        {"Origin": "https://evil.example", "Sec-Fetch-Site": "same-origin"},
    ):
        refused = client.get("/v1/s3/params", params=PARAMS, headers=headers)
        assert refused.status_code == 403, headers
        assert refused.headers["content-type"] == "application/problem+json"
        assert "origin" in refused.json()["detail"].lower()
    assert client.get("/v1/recordings").json()["items"] == []
    # What a browser sends for a same-origin fetch, or a cross-origin one from an allowed origin.
    assert client.get("/v1/s3/params", params=PARAMS, headers={"Sec-Fetch-Site": "same-origin"}).status_code == 200
    assert client.get("/v1/s3/params", params=PARAMS, headers={"Origin": OWN_ORIGIN}).status_code == 200
    assert len(client.get("/v1/recordings").json()["items"]) == 2


def test_state_changes_accept_sec_fetch_site_same_origin(client, alice):
    sign_in(client, alice)
    assert client.post("/v1/recordings", json=BODY, headers={"Sec-Fetch-Site": "same-origin"}).status_code == 201
    assert client.post("/v1/recordings", json=BODY, headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403


def test_bearer_callers_sign_uploads_without_origin(client, alice):
    assert client.get("/v1/s3/params", params=PARAMS, headers=alice.headers).status_code == 200


def test_revoking_the_key_ends_its_sessions_at_once(app, client, alice, bob, settings):
    from fastapi.testclient import TestClient

    from service.auth.api_keys import revoke_api_key

    sign_in(client, alice)
    with TestClient(app, base_url="http://testserver") as other_browser, TestClient(app) as bobs_browser:
        sign_in(other_browser, alice)
        sign_in(bobs_browser, bob)
        with session_scope(settings) as session:
            revoked = revoke_api_key(session, prefix=alice.token.split("_")[1])
        assert revoked.sessions_ended == 2
        for browser in (client, other_browser):
            assert browser.get("/v1/recordings").status_code == 401
            assert browser.get("/v1/auth/session").status_code == 401
        assert bobs_browser.get("/v1/recordings").status_code == 200  # another key's session lives on


def test_a_key_revoked_elsewhere_cannot_mint_a_session_even_while_cached(client, alice, settings):
    from service.auth.models import api_keys

    assert client.get("/v1/recordings", headers=alice.headers).status_code == 200  # now cached here
    # Another process revokes it: this process's cache does not know yet.
    with session_scope(settings) as session:
        session.execute(update(api_keys).where(api_keys.c.owner == "alice").values(revoked_at=utcnow()))
        session.commit()
    refused = client.post("/v1/auth/session", headers=alice.headers)
    assert refused.status_code == 401
    assert refused.headers["content-type"] == "application/problem+json"
    assert "set-cookie" not in refused.headers


def test_the_reaper_removes_expired_sessions(client, alice, bob, settings):

    from service.auth.sessions import delete_expired_sessions

    sign_in(client, alice)
    with session_scope(settings) as session:
        session.execute(
            update(browser_sessions)
            .where(browser_sessions.c.owner == "alice")
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        session.commit()
        removed = delete_expired_sessions(session)
        assert removed >= 1
        remaining = select(func.count()).select_from(browser_sessions).where(browser_sessions.c.owner == "alice")
        assert session.execute(remaining).scalar_one() == 0
