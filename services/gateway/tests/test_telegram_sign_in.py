"""Signing in from Telegram and resetting a password through it (`gateway.telegram_login`,
`gateway.account`): the Login Widget's and the Mini App's hashes (good, forged, stale, signed
with the wrong key), the bot's one-time link, accounts made from Telegram, and "forgot
password". The real gateway app on a migrated database and Redis; the telegram service behind
it is the fake HTTP server of `fake_services.py`."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from gateway_tests_factories import add_user

from contracts import make_envelope
from contracts.telegram import AccountCreatedV1
from gateway.app import create_api
from gateway.consumers import build_subscription
from gateway.telegram_login import check_init_data, check_widget
from runtime.errors import Unauthenticated

TOKEN = "123456:TEST-TOKEN"  # the development bot token the gateway's settings default to
PASSWORD = "correct horse 1"
NEW_PASSWORD = "battery staple 2"


def widget_fields(tg_id: int, token: str = TOKEN, auth_date: int | None = None,
                  **extra: str) -> dict[str, str]:
    """What the Login Widget hands the page, signed as Telegram signs it."""
    fields = {"id": str(tg_id), "first_name": "Ann", "username": "ann",
              "auth_date": str(int(time.time()) if auth_date is None else auth_date), **extra}
    check = "\n".join(f"{k}={fields[k]}" for k in sorted(fields)).encode()
    fields["hash"] = hmac.new(hashlib.sha256(token.encode()).digest(), check,
                              hashlib.sha256).hexdigest()
    return fields


def init_data(tg_id: int, token: str = TOKEN, auth_date: int | None = None,
              swap_key: bool = False) -> str:
    """A Mini App's `initData` signed as Telegram signs it (`swap_key`: the known mistake of
    swapping HMAC's key and message)."""
    pairs = {"query_id": "AAHdF6IQAAAAAN0XohDhrOrc",
             "user": json.dumps({"id": tg_id, "first_name": "Ann", "username": "ann"}),
             "auth_date": str(int(time.time()) if auth_date is None else auth_date),
             "signature": "c2lnbmVkLWJ5LXRlbGVncmFt"}
    check = "\n".join(f"{k}={pairs[k]}" for k in sorted(pairs)).encode()
    secret = (hmac.new(token.encode(), b"WebAppData", hashlib.sha256) if swap_key
              else hmac.new(b"WebAppData", token.encode(), hashlib.sha256)).digest()
    pairs["hash"] = hmac.new(secret, check, hashlib.sha256).hexdigest()
    return urlencode(pairs)


# --- the hash rules ------------------------------------------------------------------------

def test_the_widget_hash_is_checked_with_the_bot_tokens_sha256():
    now = time.time()
    assert check_widget(widget_fields(42), TOKEN, now, 86400).id == 42
    forged = {**widget_fields(42), "id": "43"}  # another user under the same hash
    for fields, reason in [(forged, "bad_hash"), (widget_fields(42, token="1:other"), "bad_hash"),
                           ({**widget_fields(42), "hash": "0" * 64}, "bad_hash"),
                           (widget_fields(42, auth_date=int(now) - 86401), "expired"),
                           (widget_fields(42, auth_date=int(now) + 3600), "expired")]:
        with pytest.raises(Unauthenticated) as exc:
            check_widget(fields, TOKEN, now, 86400)
        assert exc.value.details == {"reason": reason}


def test_init_data_is_checked_with_the_web_app_data_key_and_keeps_the_signature_pair():
    now = time.time()
    user = check_init_data(init_data(7), TOKEN, now, 86400)
    assert (user.id, user.username) == (7, "ann")
    tampered = init_data(7).replace("%22id%22%3A+7", "%22id%22%3A+8")
    assert tampered != init_data(7)
    without_signature = "&".join(p for p in init_data(7).split("&")
                                 if not p.startswith("signature="))
    for data, reason in [(tampered, "bad_hash"), (init_data(7, swap_key=True), "bad_hash"),
                         (init_data(7, token="1:other"), "bad_hash"),
                         (without_signature, "bad_hash"),
                         (init_data(7, auth_date=int(now) - 86401), "expired")]:
        with pytest.raises(Unauthenticated) as exc:
            check_init_data(data, TOKEN, now, 86400)
        assert exc.value.details == {"reason": reason}


# --- through the gateway -------------------------------------------------------------------

@pytest.fixture
async def app(db, redis, gateway_settings):
    application = create_api(gateway_settings)
    yield application
    await application.state.clients.close()
    await application.state.db.dispose()


def client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")


def account(user_id: str, tg_id: int) -> dict:
    return {"user_id": user_id, "telegram_user_id": tg_id, "telegram_username": "ann"}


def tg_id() -> int:
    return int(uuid.uuid4().int % 10**12) + 10**6


async def anon_csrf(c: httpx.AsyncClient, path: str) -> str:
    page = (await c.get(path)).text
    return page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]


async def test_the_widget_signs_in_the_linked_account_and_a_forged_hash_signs_in_nobody(
        app, services):
    uid, tg = await add_user(app.state.db), tg_id()
    services.set("telegram", "GET", rf"/internal/accounts/by-telegram/{tg}", 200,
                 account(uid, tg))
    async with client(app) as c:
        forged = {**widget_fields(tg), "first_name": "Eve"}
        r = await c.post("/api/v1/auth/telegram-widget", json=forged)
        assert (r.status_code, r.json()["code"]) == (401, "UNAUTHENTICATED")
        assert app.state.settings.session_cookie not in c.cookies
        assert [call.path for call in services.calls if call.service == "telegram"] == []
        r = await c.post("/api/v1/auth/telegram-widget", json=widget_fields(tg))
        assert r.status_code == 200, r.text
        assert r.json()["user"]["id"] == uid
        me = await c.get("/api/v1/auth/me")
        assert me.status_code == 200 and me.json()["user"]["id"] == uid
    [call] = [c for c in services.calls if c.service == "telegram"]
    assert (call.role, call.user_id) == ("SERVICE", "gateway")


async def test_the_widget_for_a_telegram_user_without_an_account_says_how_to_get_one(
        app, services):
    async with client(app) as c:
        r = await c.post("/api/v1/auth/telegram-widget", json=widget_fields(tg_id()))
    assert r.status_code == 401
    assert r.json()["details"] == {"reason": "no_account"}


async def test_the_bots_login_link_signs_in_once_and_makes_an_account_not_seen_yet(
        app, services, pg):
    uid, tg = uuid.uuid4().hex, tg_id()
    services.set("telegram", "POST", r"/internal/login-tokens/redeem", 200, account(uid, tg))
    async with client(app) as c:
        r = await c.get("/api/v1/auth/telegram-login", params={"token": "tok-1"})
        assert (r.status_code, r.headers["location"]) == (303, "/app")
        me = (await c.get("/api/v1/auth/me")).json()["user"]
        settings = await c.get("/app/settings")  # an account without an email says whose it is
        assert settings.status_code == 200 and "Telegram @ann" in settings.text
    assert (me["id"], me["email"], me["telegram"]) == (
        uid, None, {"linked": True, "username": "ann", "id": tg})
    [call] = [c for c in services.calls if c.service == "telegram"]
    assert json.loads(call.body) == {"token": "tok-1"}
    # the telegram service says the link is spent: no session
    services.set("telegram", "POST", r"/internal/login-tokens/redeem", 401,
                 {"code": "UNAUTHENTICATED", "message": "This sign-in link is invalid"})
    async with client(app) as c:
        r = await c.get("/api/v1/auth/telegram-login", params={"token": "tok-1"})
        assert r.status_code == 401
        assert app.state.settings.session_cookie not in c.cookies
    assert await pg.fetchval("SELECT password_hash FROM identity.users WHERE id = $1",
                             uid) is None


async def test_a_blocked_account_gets_no_session_from_telegram(app, services, pg):
    uid, tg = await add_user(app.state.db), tg_id()
    await pg.execute("UPDATE identity.users SET is_blocked = true WHERE id = $1", uid)
    services.set("telegram", "POST", r"/internal/login-tokens/redeem", 200, account(uid, tg))
    async with client(app) as c:
        r = await c.get("/api/v1/auth/telegram-login", params={"token": "tok"})
    assert r.status_code == 403


async def test_the_mini_app_signs_in_with_good_init_data_only(app, services):
    uid, tg = await add_user(app.state.db), tg_id()
    services.set("telegram", "GET", rf"/internal/accounts/by-telegram/{tg}", 200,
                 account(uid, tg))
    async with client(app) as c:
        page = await c.get("/tg/app")
        assert page.status_code == 200 and 'data-mini-app' in page.text
        assert "telegram.org" not in page.text  # nothing loaded from outside (CSP intact)
        assert "script-src 'self'" in page.headers["content-security-policy"]
        csrf = await anon_csrf(c, "/tg/app")
        bad = await c.post("/tg/app", data={"csrf_token": csrf,
                                            "init_data": init_data(tg, swap_key=True)})
        assert bad.status_code == 401 and 'data-testid="tgapp-error"' in bad.text
        assert app.state.settings.session_cookie not in c.cookies
        ok = await c.post("/tg/app", data={"csrf_token": csrf, "init_data": init_data(tg)})
        assert (ok.status_code, ok.headers["location"]) == (303, "/app")
        assert (await c.get("/api/v1/auth/me")).json()["user"]["id"] == uid


async def test_the_login_page_offers_telegram_without_loading_its_script(app):
    async with client(app) as c:
        page = (await c.get("/login")).text
    start = page.index('href="https://oauth.telegram.org/auth?') + len('href="')
    url = urlsplit(page[start:page.index('"', start)].replace("&amp;", "&"))
    query = parse_qs(url.query)
    assert query["bot_id"] == ["123456"]
    assert query["return_to"] == [f"{app.state.settings.app_base_url}/login/telegram"]
    assert "<script src=\"https://" not in page and 'href="/forgot-password"' in page


# --- accounts made from Telegram -----------------------------------------------------------

async def test_an_account_made_from_telegram_is_registered_once_with_its_referral(db, pg):
    uid, tg = uuid.uuid4().hex, tg_id()
    handle = build_subscription(db).handlers[AccountCreatedV1.routing_key()]
    event = AccountCreatedV1(user_id=uid, telegram_user_id=tg, telegram_username="ann",
                             referral_code="abc23xyz", created_at=datetime.now(UTC))
    env = make_envelope(event, producer="telegram")
    await handle(env, event)
    await handle(env, event)
    row = await pg.fetchrow("SELECT email, password_hash, role, telegram_linked, telegram_id "
                            "FROM identity.users WHERE id = $1", uid)
    assert tuple(row) == (None, None, "USER", True, tg)
    events = await pg.fetch("SELECT envelope FROM identity.outbox WHERE routing_key = "
                            "'identity.user.registered.v1'")
    mine = [json.loads(e["envelope"])["payload"] for e in events]
    mine = [p for p in mine if p["user_id"] == uid]
    assert len(mine) == 1
    assert (mine[0]["email"], mine[0]["referral_code"]) == ("", "abc23xyz")


# --- forgot password -----------------------------------------------------------------------

async def register(c: httpx.AsyncClient) -> tuple[str, str]:
    email = f"{uuid.uuid4().hex[:10]}@example.com"
    r = await c.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
    assert r.status_code == 201
    return email, r.json()["user"]["id"]


async def forgot(c: httpx.AsyncClient, email: str) -> httpx.Response:
    csrf = await anon_csrf(c, "/forgot-password")
    return await c.post("/forgot-password", data={"csrf_token": csrf, "email": email})


def reset_calls(services) -> list[dict]:
    return [json.loads(c.body) for c in services.calls
            if c.path == "/internal/password-reset-notices"]


async def test_forgot_password_sends_a_single_use_link_to_the_linked_telegram(
        app, services, pg):
    services.set("telegram", "POST", r"/internal/password-reset-notices", 202, {"sent": True})
    async with client(app) as owner:
        email, uid = await register(owner)
    await pg.execute("UPDATE identity.users SET telegram_linked = true WHERE id = $1", uid)
    async with client(app) as c:
        page = await forgot(c, email)
        assert page.status_code == 200 and 'data-testid="forgot-sent"' in page.text
        [call] = reset_calls(services)
        assert (call["user_id"], call["minutes"]) == (uid, 30)
        token = parse_qs(urlsplit(call["url"]).query)["token"][0]
        assert call["url"].startswith(f"{app.state.settings.app_base_url}/reset-password?")
        stored = await pg.fetchval("SELECT token_hash FROM identity.password_resets "
                                   "WHERE user_id = $1", uid)
        assert stored == hashlib.sha256(token.encode()).hexdigest()  # only the hash is kept
        csrf = await anon_csrf(c, f"/reset-password?token={token}")
        r = await c.post("/reset-password", data={"csrf_token": csrf, "token": token,
                                                  "password": NEW_PASSWORD})
        assert (r.status_code, r.headers["location"]) == (303, "/login?done=password_reset")
        again = await c.post("/reset-password", data={"csrf_token": csrf, "token": token,
                                                      "password": "another pass 3"})
        assert again.status_code == 400 and "invalid, used or expired" in again.text
        login = await c.post("/api/v1/auth/login", json={"email": email,
                                                         "password": NEW_PASSWORD})
        assert login.status_code == 200
    async with client(app) as c:  # the old password is gone
        assert (await c.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
                ).status_code == 401


async def test_an_expired_reset_link_sets_nothing(app, services, pg):
    services.set("telegram", "POST", r"/internal/password-reset-notices", 202, {"sent": True})
    async with client(app) as c:
        email, uid = await register(c)
    await pg.execute("UPDATE identity.users SET telegram_linked = true WHERE id = $1", uid)
    async with client(app) as c:
        await forgot(c, email)
        token = parse_qs(urlsplit(reset_calls(services)[-1]["url"]).query)["token"][0]
        await pg.execute("UPDATE identity.password_resets SET expires_at = now() - interval "
                         "'1 second' WHERE user_id = $1", uid)
        csrf = await anon_csrf(c, "/reset-password")
        r = await c.post("/reset-password", data={"csrf_token": csrf, "token": token,
                                                  "password": NEW_PASSWORD})
        assert r.status_code == 400
        assert (await c.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
                ).status_code == 200


async def test_without_a_linked_telegram_nothing_is_sent_and_the_page_says_telegram_is_the_way(
        app, services):
    async with client(app) as c:
        email, _ = await register(c)
    async with client(app) as c:
        page = await c.get("/forgot-password")
        assert "only to the Telegram account linked" in page.text
        unknown = await forgot(c, f"nobody-{uuid.uuid4().hex[:6]}@example.com")
        unlinked = await forgot(c, email)
    assert reset_calls(services) == []
    # the same answer for an unknown email and an account without Telegram
    assert unknown.status_code == unlinked.status_code == 200
    assert 'data-testid="forgot-sent"' in unknown.text and 'data-testid="forgot-sent"' in \
        unlinked.text
