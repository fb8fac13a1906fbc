"""Identity and access: sessions, rate limits, RBAC, blocking, the audit chain, Telegram linking."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import uuid

import asyncpg
import httpx

from tests.conftest import (
    ADMIN_DSN,
    ROOT,
    await_for,
    register,
    unique_email,
    wait_for,
)
from tests.e2e.test_support_flow import calls, operator_says, topic_of

PASSWORD = "correct horse 1"


def anon(gateway_url: str) -> httpx.Client:
    return httpx.Client(base_url=gateway_url + "/api/v1", timeout=15,
                        headers={"Content-Type": "application/json"})


def test_register_me_logout_and_uniform_login_failures(gateway_url):
    email = unique_email("life")
    client = register(gateway_url, email)
    me = client.get("/auth/me")
    assert me.status_code == 200
    user = me.json()["user"]
    assert user["email"] == email and user["role"] == "USER"
    assert user["telegram"] == {"linked": False, "username": None, "id": None}
    cookie = client.cookies.get("sid")
    assert cookie
    assert client.post("/auth/logout").status_code == 204
    stale = anon(gateway_url)
    stale.cookies.set("sid", cookie)
    assert stale.get("/auth/me").status_code == 401
    assert client.get("/auth/me").status_code == 401

    # taken email (case-insensitive) is a 409
    dup = anon(gateway_url).post("/auth/register", json={"email": email.upper(),
                                                          "password": PASSWORD})
    assert dup.status_code == 409 and dup.json()["code"] == "CONFLICT"

    wrong = anon(gateway_url).post("/auth/login", json={"email": email, "password": "nope nope 1"})
    unknown = anon(gateway_url).post("/auth/login", json={"email": unique_email("ghost"),
                                                          "password": "nope nope 1"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()

    ok = anon(gateway_url).post("/auth/login", json={"email": email, "password": PASSWORD})
    assert ok.status_code == 200 and ok.json()["user"]["id"] == user["id"]
    set_cookie = ok.headers["set-cookie"].lower()
    assert "httponly" in set_cookie and "samesite=lax" in set_cookie


def test_sixth_quick_login_for_one_email_is_rate_limited(gateway_url):
    email = unique_email("brute")
    register(gateway_url, email)
    statuses = [anon(gateway_url).post("/auth/login", json={"email": email,
                                                            "password": "wrong pass 1"})
                for _ in range(6)]
    assert [r.status_code for r in statuses[:5]] == [401] * 5
    assert statuses[5].status_code == 429
    assert statuses[5].json()["code"] == "RATE_LIMITED"
    assert int(statuses[5].headers["Retry-After"]) >= 1


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def test_web_form_tokens_are_bound_to_the_session(gateway_url):
    email = unique_email("csrf")
    other = register(gateway_url)
    register(gateway_url, email)
    web = httpx.Client(base_url=gateway_url, timeout=15)
    anon_token = csrf_of(web.get("/login").text)
    anon_cookie = web.cookies["web_anon"]
    r = web.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": anon_token})
    assert r.status_code == 303 and web.cookies.get("sid")
    assert "web_anon" not in web.cookies  # dropped at sign-in
    web.cookies.set("web_anon", anon_cookie)
    # the token minted before sign-in is void once signed in, even with its cookie
    assert web.post("/logout", data={"csrf_token": anon_token}).status_code == 403
    # as is another session's token
    other_web = httpx.Client(base_url=gateway_url, timeout=15,
                             cookies={"sid": other.cookies["sid"]})
    other_token = csrf_of(other_web.get("/app/settings").text)
    assert web.post("/logout", data={"csrf_token": other_token}).status_code == 403
    assert web.get("/api/v1/auth/me").status_code == 200  # still signed in
    own = csrf_of(web.get("/app/settings").text)
    assert web.post("/logout", data={"csrf_token": own}).status_code == 303
    assert web.get("/api/v1/auth/me").status_code == 401


def test_api_answers_are_never_cached(gateway_url):
    client = register(gateway_url)
    for r in (client.get("/auth/me"), client.get("/subscriptions"), anon(gateway_url).get(
            "/auth/me")):
        assert r.headers["cache-control"] == "no-store", r.url


def test_common_passwords_and_the_email_are_refused(gateway_url):
    email = unique_email("pw")
    for password, reason in [("password1234", "common"), ("Qwertyuiop", "common"),
                             (email.upper(), "email"), (email.split("@")[0], "email")]:
        r = anon(gateway_url).post("/auth/register", json={"email": email, "password": password})
        assert r.status_code == 400, (password, r.text)
        body = r.json()
        assert body["code"] == "VALIDATION_ERROR"
        assert body["details"] == {"field": "password", "reason": reason}
        assert ("common" if reason == "common" else "email") in body["message"]
    assert anon(gateway_url).post("/auth/register", json={
        "email": email, "password": PASSWORD}).status_code == 201


def test_an_admin_cannot_demote_or_block_themself(gateway_url, admin_client):
    me = admin_client.get("/auth/me").json()["user"]
    r = admin_client.put(f"/admin/users/{me['id']}/role", json={"role": "USER"})
    assert r.status_code == 409 and r.json()["code"] == "CONFLICT", r.text
    r = admin_client.post(f"/admin/users/{me['id']}/block")
    assert r.status_code == 409 and r.json()["code"] == "CONFLICT", r.text
    assert admin_client.get("/auth/me").json()["user"]["role"] == "ADMIN"
    log = admin_client.get("/admin/audit-log").json()["entries"]
    assert {("user.role", "refused:409"), ("user.block", "refused:409")} <= {
        (e["action"], e["outcome"]) for e in log if e["target_id"] == me["id"]}


def test_cookie_writes_must_be_json(gateway_url):
    client = register(gateway_url)
    r = client.post("/tickets", content=b"subject=x&body=y",
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 403 and r.json()["code"] == "FORBIDDEN"
    assert client.get("/tickets").json()["tickets"] == []


def test_security_headers_and_request_id(gateway_url):
    r = httpx.get(f"{gateway_url}/api/v1/plans", headers={"X-Request-ID": "trace-me-123"})
    assert r.headers["x-request-id"] == "trace-me-123"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert r.headers["referrer-policy"]


def test_rbac_users_support_admin(gateway_url, emulator_url, admin_client):
    a, b = register(gateway_url), register(gateway_url)
    a_id = a.get("/auth/me").json()["user"]["id"]
    for method, path in [("GET", "/admin/users"), ("POST", f"/admin/users/{a_id}/block"),
                         ("GET", "/admin/tickets"), ("GET", "/admin/audit-log"),
                         ("PUT", f"/admin/users/{a_id}/role")]:
        r = b.request(method, path, json={"role": "ADMIN"} if method == "PUT" else None)
        assert r.status_code == 403, (method, path, r.text)
        assert r.json()["code"] == "FORBIDDEN"

    support_email = unique_email("support")
    support = register(gateway_url, support_email)
    support_id = support.get("/auth/me").json()["user"]["id"]
    r = admin_client.put(f"/admin/users/{support_id}/role", json={"role": "SUPPORT"})
    assert r.status_code == 200 and r.json()["user"]["role"] == "SUPPORT"
    ticket = a.post("/tickets", json={"subject": "Need help", "body": "please"}).json()["ticket"]
    r = support.post(f"/admin/tickets/{ticket['id']}/messages", json={"body": "Support here"})
    assert r.status_code == 201, r.text
    seen = support.get(f"/admin/tickets/{ticket['id']}").json()["ticket"]
    assert seen["status"] == "PENDING_USER"
    thread = topic_of(emulator_url, ticket["id"])
    wait_for(lambda: [c for c in calls(emulator_url, "sendMessage", message_thread_id=thread)
                      if "Support here" in c["params"]["text"]],
             message="panel answer mirrored to the support chat")
    assert support.post(f"/admin/users/{a_id}/block").status_code == 403
    r = support.post(f"/admin/tickets/{ticket['id']}/close")
    assert r.status_code == 200 and r.json()["ticket"]["status"] == "CLOSED"

    log = admin_client.get("/admin/audit-log", params={"limit": 100}).json()["entries"]
    actions = {(e["action"], e["target_id"], e["outcome"]) for e in log}
    assert ("user.role", support_id, "success") in actions
    assert ("ticket.answer", ticket["id"], "success") in actions
    assert ("ticket.close", ticket["id"], "success") in actions


def _verify_audit(stack) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway", "verify-audit"], env=stack.full_env(),
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_block_revokes_sessions_publishes_event_and_audit_chain_verifies(
        stack, gateway_url, admin_client):
    victim = register(gateway_url)
    victim_id = victim.get("/auth/me").json()["user"]["id"]
    r = admin_client.post(f"/admin/users/{victim_id}/block")
    assert r.status_code == 200 and r.json()["user"]["is_blocked"] is True
    assert victim.get("/auth/me").status_code == 401  # sessions revoked at once
    victim_email = r.json()["user"]["email"]
    relog = anon(gateway_url).post("/auth/login", json={"email": victim_email,
                                                        "password": PASSWORD})
    assert relog.status_code == 403 and relog.json()["code"] == "FORBIDDEN"
    assert "set-cookie" not in relog.headers
    web = httpx.Client(base_url=gateway_url, timeout=15)  # the sign-in form: a page, no session
    token = csrf_of(web.get("/login").text)
    page = web.post("/login", data={"email": victim_email, "password": PASSWORD,
                                    "csrf_token": token})
    assert page.status_code == 403 and "account is blocked" in page.text
    assert "sid" not in web.cookies

    async def sessions_of_victim():
        conn = await asyncpg.connect(ADMIN_DSN)
        try:
            return await conn.fetchval("SELECT count(*) FROM identity.sessions "
                                       "WHERE user_id = $1", victim_id)
        finally:
            await conn.close()

    assert asyncio.run(sessions_of_victim()) == 0

    async def published():
        conn = await asyncpg.connect(ADMIN_DSN)
        try:
            return await conn.fetchval(
                "SELECT count(*) FROM identity.outbox WHERE routing_key = "
                "'identity.user.blocked.v1' AND envelope->'payload'->>'user_id' = $1 "
                "AND published_at IS NOT NULL", victim_id)
        finally:
            await conn.close()

    assert asyncio.run(await_for(published, message="blocked event published")) == 1
    again = admin_client.post(f"/admin/users/{victim_id}/block")
    assert again.status_code == 409
    entries = admin_client.get("/admin/audit-log").json()["entries"]
    assert any(e["action"] == "user.block" and e["target_id"] == victim_id
               and e["outcome"] == "refused:409" for e in entries)

    ok = _verify_audit(stack)
    assert ok.returncode == 0, ok.stdout + ok.stderr

    async def tamper(restore: str | None = None):
        conn = await asyncpg.connect(ADMIN_DSN)
        try:
            row = await conn.fetchrow("SELECT id, outcome FROM identity.audit_log "
                                      "ORDER BY id LIMIT 1")
            await conn.execute("UPDATE identity.audit_log SET outcome = $1 WHERE id = $2",
                               restore or "success-but-forged", row["id"])
            return row["outcome"]
        finally:
            await conn.close()

    original = asyncio.run(tamper())
    try:
        bad = _verify_audit(stack)
        assert bad.returncode == 1
        assert "audit_chain_broken" in bad.stdout
    finally:
        asyncio.run(tamper(original))
    assert _verify_audit(stack).returncode == 0


def test_telegram_link_creation_is_rate_limited_per_user(gateway_url):
    client, other = register(gateway_url), register(gateway_url)
    answers = [client.post("/auth/telegram-link").status_code for _ in range(10)]
    assert answers == [201] * 10  # TELEGRAM_LINKS_PER_USER_PER_HOUR, default 10
    r = client.post("/auth/telegram-link")
    assert r.status_code == 429 and r.json()["code"] == "RATE_LIMITED"
    assert int(r.headers["Retry-After"]) >= 1
    assert other.post("/auth/telegram-link").status_code == 201  # per user


def test_telegram_linking_and_bot_conversation(gateway_url, emulator_url):
    client = register(gateway_url)
    r = client.post("/auth/telegram-link")
    assert r.status_code == 201, r.text
    url = r.json()["url"]
    m = re.fullmatch(r"https://t\.me/(\w+)\?start=([A-Za-z0-9_-]{1,64})", url)
    assert m, url
    token = m.group(2)
    tg_user = 700000 + uuid.uuid4().int % 100000

    def say(text: str) -> dict:
        resp = httpx.post(f"{emulator_url}/_emulator/updates", json={
            "chat_id": tg_user, "from_id": tg_user, "text": text, "chat_type": "private",
            "from_username": f"user{tg_user}"}, timeout=15)
        assert resp.status_code == 200 and resp.json()["status_code"] == 200
        return resp.json()

    def bot_said(fragment: str):
        return [c for c in calls(emulator_url, "sendMessage", chat_id=tg_user)
                if fragment in c["params"]["text"]]

    say(f"/start {token}")
    wait_for(lambda: client.get("/auth/me").json()["user"]["telegram"]["linked"],
             message="account linked")
    assert client.get("/auth/me").json()["user"]["telegram"]["username"] == f"user{tg_user}"
    wait_for(lambda: bot_said("now linked"), message="link confirmation")

    say(f"/start {token}")  # reused token
    wait_for(lambda: bot_said("invalid or has expired"), message="reuse refused")

    stranger = 800000 + uuid.uuid4().int % 100000
    httpx.post(f"{emulator_url}/_emulator/updates", json={
        "chat_id": stranger, "from_id": stranger, "text": "hello?", "chat_type": "private"},
        timeout=15)
    wait_for(lambda: [c for c in calls(emulator_url, "sendMessage", chat_id=stranger)
                      if "not linked" in c["params"]["text"]], message="unlinked explanation")

    say("My VPN is slow in the evenings")

    def opened():
        ts = client.get("/tickets").json()["tickets"]
        return ts[0] if ts else None

    ticket = wait_for(opened, message="ticket from the bot")
    assert ticket["source"] == "TELEGRAM"
    thread = topic_of(emulator_url, ticket["id"])
    wait_for(lambda: [c for c in calls(emulator_url, "sendMessage")
                      if c["params"].get("message_thread_id") == thread
                      and "slow in the evenings" in c["params"]["text"]],
             message="mirrored to the support chat")
    operator_says(emulator_url, thread, "Try another server location")
    wait_for(lambda: bot_said("Try another server location"), message="reply reached the user")


async def test_no_secrets_in_clear_in_logs_or_database(stack, gateway_url, db):
    password = f"unique-{uuid.uuid4().hex}"
    client = register(gateway_url, password=password)
    token = client.cookies.get("sid")
    client.get("/auth/me")
    anon(gateway_url).post("/auth/login", json={"email": unique_email("x"), "password": password})
    logs = "".join(p.read_text(errors="replace") for p in stack.log_dir.glob("*.log"))
    assert password not in logs and token not in logs
    dump = subprocess.run(["pg_dump", "--data-only", "-U", "postgres", "-h", "127.0.0.1",
                           ADMIN_DSN.rsplit("/", 1)[1]], capture_output=True, text=True,
                          timeout=120)
    assert dump.returncode == 0, dump.stderr
    assert password not in dump.stdout and token not in dump.stdout
    assert "$argon2id$" in dump.stdout  # the hash is what is stored
