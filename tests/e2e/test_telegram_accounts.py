"""Accounts from Telegram through the whole system, as a Telegram user and a browser would:
an account made by `/start`, signed in on the web from the bot's `/login` link (once), and
"forgot password" answered in the linked Telegram chat."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
import uuid
from urllib.parse import urlencode

import httpx

from tests.conftest import register, wait_for
from tests.e2e.test_identity import csrf_of
from tests.e2e.test_telegram_notifications import bot_texts, link_telegram, say

NEW_PASSWORD = "battery staple 2"


def test_web_sign_in_from_the_bots_login_link(gateway_url, emulator_url):
    tg_user = 800000 + uuid.uuid4().int % 100000
    say(emulator_url, tg_user, "/start")
    wait_for(lambda: any("Your account is ready" in t for t in bot_texts(emulator_url, tg_user)),
             message="account made")
    say(emulator_url, tg_user, "/login")
    pattern = re.escape(gateway_url) + r"/api/v1/auth/telegram-login\?token=[A-Za-z0-9_-]+"

    def link() -> str | None:
        found = [m.group(0) for t in bot_texts(emulator_url, tg_user)
                 for m in [re.search(pattern, t)] if m]
        return found[-1] if found else None

    wait_for(link, message="sign-in link")
    browser = httpx.Client(timeout=15)
    opened = browser.get(link())
    assert (opened.status_code, opened.headers["location"]) == (303, "/app")
    me = browser.get(f"{gateway_url}/api/v1/auth/me").json()["user"]
    assert me["email"] is None and me["telegram"]["id"] == tg_user
    # the link works once
    again = httpx.Client(timeout=15).get(link())
    assert again.status_code == 401 and again.json()["code"] == "UNAUTHENTICATED"


def test_forgot_password_sends_the_reset_link_to_the_linked_telegram(gateway_url, emulator_url):
    email = f"forgot-{uuid.uuid4().hex[:8]}@example.com"
    client = register(gateway_url, email)
    tg_user = link_telegram(client, emulator_url)
    web = httpx.Client(base_url=gateway_url, timeout=15)
    page = web.post("/forgot-password", data={"csrf_token": csrf_of(
        web.get("/forgot-password").text), "email": email})
    assert page.status_code == 200 and 'data-testid="forgot-sent"' in page.text
    pattern = re.escape(gateway_url) + r"/reset-password\?token=([A-Za-z0-9_-]+)"

    def token() -> str | None:
        found = [m.group(1) for t in bot_texts(emulator_url, tg_user)
                 for m in [re.search(pattern, t)] if m]
        return found[-1] if found else None

    wait_for(token, message="reset link in Telegram")
    form = web.get(f"/reset-password?token={token()}")
    done = web.post("/reset-password", data={"csrf_token": csrf_of(form.text),
                                             "token": token(), "password": NEW_PASSWORD})
    assert (done.status_code, done.headers["location"]) == (303, "/login?done=password_reset")
    assert client.get("/auth/me").status_code == 401  # every session ended
    login = httpx.post(f"{gateway_url}/api/v1/auth/login", timeout=15,
                       json={"email": email, "password": NEW_PASSWORD})
    assert login.status_code == 200
    reused = web.post("/reset-password", data={"csrf_token": csrf_of(form.text),
                                               "token": token(), "password": "another pass 3"})
    assert reused.status_code == 400


def _widget_fields(token: str, tg_user: int, forged: bool = False) -> dict:
    """The Login Widget's fields, signed as Telegram signs them (adapters-wave2 §7)."""
    fields = {"id": str(tg_user), "first_name": "Ann", "username": "ann",
              "auth_date": str(int(time.time()))}
    check = "\n".join(f"{k}={v}" for k, v in sorted(fields.items()))
    digest = hmac.new(hashlib.sha256(token.encode()).digest(), check.encode(),
                      hashlib.sha256).hexdigest()
    return {**fields, "hash": "0" * 64 if forged else digest}


def _init_data(token: str, tg_user: int, forged: bool = False) -> str:
    """A Mini App's initData, signed as Telegram signs it (adapters-wave2 §7)."""
    pairs = {"auth_date": str(int(time.time())), "query_id": "AAH" + uuid.uuid4().hex[:12],
             "user": json.dumps({"id": tg_user, "first_name": "Ann", "username": "ann"})}
    check = "\n".join(f"{k}={v}" for k, v in sorted(pairs.items()))
    secret = hmac.new(b"WebAppData", token.encode(), hashlib.sha256).digest()
    digest = hmac.new(secret, check.encode(), hashlib.sha256).hexdigest()
    return urlencode({**pairs, "hash": "f" * 64 if forged else digest})


def test_login_widget_and_mini_app_sign_in_with_good_and_forged_hashes(stack, gateway_url,
                                                                       emulator_url):
    token = stack.env["TELEGRAM_BOT_TOKEN"]
    tg_user = 810000 + uuid.uuid4().int % 100000
    say(emulator_url, tg_user, "/start")
    wait_for(lambda: any("Your account is ready" in t for t in bot_texts(emulator_url, tg_user)),
             message="account made")
    api = httpx.Client(base_url=f"{gateway_url}/api/v1", timeout=15)
    forged = api.post("/auth/telegram-widget", json=_widget_fields(token, tg_user, forged=True))
    assert forged.status_code == 401 and "sid" not in forged.cookies
    signed = api.post("/auth/telegram-widget", json=_widget_fields(token, tg_user))
    assert signed.status_code == 200, signed.text
    assert signed.json()["user"]["telegram"]["id"] == tg_user
    # the Mini App: the page's form posts initData
    for bad, status in ((True, 401), (False, 303)):
        web = httpx.Client(base_url=gateway_url, timeout=15)
        page = web.get("/tg/app")
        r = web.post("/tg/app", data={"init_data": _init_data(token, tg_user, forged=bad),
                                      "csrf_token": csrf_of(page.text)})
        assert r.status_code == status, r.text
        if status == 303:
            assert r.headers["location"] == "/app"
            me = web.get("/api/v1/auth/me").json()["user"]
            assert me["telegram"]["id"] == tg_user and me["email"] is None
        else:
            assert "sid" not in web.cookies
