"""CSRF tokens of the web forms are bound to the session, and cookie names carry `__Host-` over
https: the real `checked_form` dependency and cookie helpers on a small app whose session
lookup is a dict."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi import FastAPI, Request, Response
from fastapi.testclient import TestClient

from gateway.account import set_session_cookie
from gateway.config import Settings
from gateway.repository import SignedInUser
from gateway.security import anon_csrf_token, csrf_token, csrf_valid
from gateway.web.deps import Form
from runtime.http import install_error_handlers

KEY = "unit-test-signing-key-0123456789abcdef"


class Sessions:
    """What `AuthService.user_for_token` answers, from a dict of live session tokens."""

    def __init__(self, tokens: dict[str, str]):
        self.tokens = tokens

    async def user_for_token(self, _db, token: str):
        uid = self.tokens.get(token)
        return SignedInUser(uid, f"{uid}@example.com", "USER", False, datetime.now(UTC), False,
                            None) if uid else None


def make_app(base_url: str = "http://127.0.0.1:8000") -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    app.state.settings = Settings(INTERNAL_SIGNING_KEY=KEY, APP_BASE_URL=base_url)
    app.state.db = None
    app.state.auth = Sessions({"session-a": "alice", "session-b": "bob"})

    @app.post("/form")
    async def post_form(form: Form):
        return {"ok": True}

    @app.post("/sign-in")
    async def sign_in(request: Request):
        response = Response(status_code=204)
        set_session_cookie(request, response, "session-a")
        return response

    return app


def post(client: TestClient, token: str, cookies: dict[str, str]) -> int:
    client.cookies.clear()
    for name, value in cookies.items():
        client.cookies.set(name, value)
    return client.post("/form", data={"csrf_token": token}).status_code


@pytest.fixture
def client() -> TestClient:
    return TestClient(make_app())


def test_a_session_accepts_only_its_own_token(client):
    anon = anon_csrf_token(KEY, "anon-1")
    assert post(client, anon, {"web_anon": "anon-1"}) == 200  # before sign-in
    assert post(client, csrf_token(KEY, "session-a"), {"sid": "session-a"}) == 200
    # an anonymous token, even with its own cookie, on a request that carries a session
    assert post(client, anon, {"web_anon": "anon-1", "sid": "session-a"}) == 403
    assert post(client, csrf_token(KEY, "session-b"), {"sid": "session-a"}) == 403
    assert post(client, "", {"sid": "session-a"}) == 403


def test_token_kinds_never_verify_as_each_other():
    assert not csrf_valid(KEY, "x", anon_csrf_token(KEY, "x"))
    assert csrf_token(KEY, "x") != csrf_token("another-key-0123456789abcdefghij", "x")


def test_an_expired_session_falls_back_to_the_anonymous_token(client):
    anon = anon_csrf_token(KEY, "anon-2")
    assert post(client, anon, {"web_anon": "anon-2", "sid": "signed-out-long-ago"}) == 200


def test_sign_in_drops_the_anonymous_cookie(client):
    client.cookies.set("web_anon", "anon-3")
    r = client.post("/sign-in")
    cookies = r.headers.get_list("set-cookie")
    assert any(c.startswith("sid=session-a") for c in cookies)
    assert any(c.startswith('web_anon=""') and "Max-Age=0" in c for c in cookies)


def test_https_uses_host_prefixed_cookie_names():
    client = TestClient(make_app("https://vpn.example.com"), base_url="https://testserver")
    settings = client.app.state.settings
    assert (settings.session_cookie, settings.anon_cookie) == ("__Host-sid", "__Host-web_anon")
    r = client.post("/sign-in")
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("__Host-sid=session-a") and "Secure" in cookie and "Path=/" in cookie
    assert "Domain" not in cookie
    token = csrf_token(KEY, "session-a")
    assert post(client, token, {"__Host-sid": "session-a"}) == 200
    # the unprefixed name is not the session there, so its token is refused
    assert post(client, token, {"sid": "session-a"}) == 403
    anon = anon_csrf_token(KEY, "anon-4")
    assert post(client, anon, {"__Host-web_anon": "anon-4"}) == 200
    assert post(client, anon, {"web_anon": "anon-4"}) == 403


def test_http_keeps_the_plain_names():
    settings = make_app().state.settings
    assert (settings.session_cookie, settings.anon_cookie) == ("sid", "web_anon")
