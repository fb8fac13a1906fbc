"""Accounts through the API and the web pages alike (`gateway.account`): a session made on one
works on the other, the sign-in limit is one bucket for both, and a password change on the
panel keeps the session that made it while signing out every other one. The real gateway app
on a migrated database and Redis, with real cookies and CSRF tokens."""

from __future__ import annotations

import uuid

import httpx
import pytest

from gateway.app import create_api
from gateway.security import csrf_token

PASSWORD = "correct horse 1"
NEW_PASSWORD = "battery staple 2"


@pytest.fixture
async def app(db, redis, gateway_settings):
    gateway_settings.login_per_email_per_minute = 3
    application = create_api(gateway_settings)
    yield application
    await application.state.clients.close()
    await application.state.db.dispose()


def client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")


def form_token(app, c: httpx.AsyncClient) -> str:
    st = app.state.settings
    return csrf_token(st.internal_signing_key, c.cookies[st.session_cookie])


async def test_a_password_change_on_the_panel_signs_out_the_other_sessions(app):
    email = f"{uuid.uuid4().hex[:10]}@example.com"
    async with client(app) as api, client(app) as web:
        r = await api.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
        assert r.status_code == 201, r.text
        r = await web.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert r.status_code == 200
        wrong = await web.post("/app/settings/password", data={
            "current_password": "not it at all", "new_password": NEW_PASSWORD,
            "csrf_token": form_token(app, web)})
        assert wrong.status_code == 400
        assert (await api.get("/api/v1/auth/me")).status_code == 200  # nothing changed
        r = await web.post("/app/settings/password", data={
            "current_password": PASSWORD, "new_password": NEW_PASSWORD,
            "csrf_token": form_token(app, web)})
        assert r.status_code == 303 and r.headers["location"].endswith("password_changed")
        assert (await web.get("/api/v1/auth/me")).json()["user"]["email"] == email
        assert (await api.get("/api/v1/auth/me")).status_code == 401
    async with client(app) as c:
        old = await c.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert old.status_code == 401
        new = await c.post("/api/v1/auth/login", json={"email": email, "password": NEW_PASSWORD})
        assert new.status_code == 200


async def test_the_sign_in_limit_is_one_bucket_for_the_api_and_the_panel(app):
    email = f"{uuid.uuid4().hex[:10]}@example.com"
    async with client(app) as c:
        # an anonymous form token comes with the sign-in page
        page = await c.get("/login")
        token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        tries = [await c.post("/api/v1/auth/login", json={"email": email, "password": "x"}),
                 await c.post("/login", data={"email": email, "password": "x",
                                              "csrf_token": token}),
                 await c.post("/api/v1/auth/login", json={"email": email, "password": "x"})]
        assert [r.status_code for r in tries] == [401, 401, 401]
        limited_api = await c.post("/api/v1/auth/login", json={"email": email, "password": "x"})
        limited_web = await c.post("/login", data={"email": email, "password": "x",
                                                   "csrf_token": token})
    assert limited_api.status_code == 429 and limited_api.json()["code"] == "RATE_LIMITED"
    assert int(limited_api.headers["Retry-After"]) > 0
    assert limited_web.status_code == 400 and "Too many" in limited_web.text


async def test_a_web_sign_in_gives_a_session_the_api_accepts_and_sign_out_ends_it(app):
    email = f"{uuid.uuid4().hex[:10]}@example.com"
    async with client(app) as c:
        assert (await c.post("/api/v1/auth/register",
                             json={"email": email, "password": PASSWORD})).status_code == 201
        c.cookies.clear()
        page = await c.get("/login")
        token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        r = await c.post("/login", data={"email": email, "password": PASSWORD,
                                         "csrf_token": token})
        assert r.status_code == 303
        assert (await c.get("/api/v1/auth/me")).json()["user"]["email"] == email
        r = await c.post("/logout", data={"csrf_token": form_token(app, c)})
        assert r.status_code == 303
        assert (await c.get("/api/v1/auth/me")).status_code == 401
