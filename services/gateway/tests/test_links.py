"""The stable subscription link's routes through the typed provisioner client: `GET
/api/v1/sub/{token}` hands the content on with the clients' headers (404 as the provisioner
says, 503 with Retry-After when it cannot answer, 429 per token and per address), the owner's
rotation and revocation go out as the caller (another's id is the provisioner's 404), staff's
are audited, `/locations` is public, and the import page opens the app. The real gateway app
with real sessions, its clients calling real HTTP servers for the services (fake_services.py).
"""

from __future__ import annotations

import httpx
import pytest
from gateway_tests_factories import PASSWORD, add_user

from gateway.app import create_api
from gateway.ratelimit import RateLimiter
from gateway.security import csrf_token

TOKEN = "A" * 40 + "_-b"
LINK = {"subscription_url": f"http://127.0.0.1:8000/api/v1/sub/{TOKEN}", "apps": [
    {"id": "happ", "name": "Happ", "platforms": ["ios", "android"],
     "import_url": f"happ://add/http://127.0.0.1:8000/api/v1/sub/{TOKEN}",
     "open_url": f"http://127.0.0.1:8000/import/happ/{TOKEN}"}]}
USERINFO = "upload=0; download=10; total=100; expire=1800000000"
JSON = {"content-type": "application/json"}  # a cookie-signed write is JSON (CSRF)


async def signed_in(db, settings, role: str) -> httpx.AsyncClient:
    app = create_api(settings)
    user = await add_user(db, role)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                               base_url="http://gw")
    r = await client.post("/api/v1/auth/login", json={"email": f"{user}@example.com",
                                                      "password": PASSWORD})
    assert r.status_code == 200, r.text
    client.user_id, client.app = user, app
    client.csrf = csrf_token(settings.internal_signing_key,
                             client.cookies[settings.session_cookie])
    return client


async def close(client: httpx.AsyncClient) -> None:
    await client.aclose()
    await client.app.state.clients.close()
    await client.app.state.db.dispose()


@pytest.fixture
async def customer(db, redis, gateway_settings, services):
    services.set("provisioner", "POST", r"/internal/subscriptions/s1/link", 200, {"link": LINK})
    services.set("provisioner", "DELETE", r"/internal/subscriptions/s1/link", 204, None)
    client = await signed_in(db, gateway_settings, "USER")
    yield client
    await close(client)


def provisioner_calls(services, prefix: str):
    return [c for c in services.calls if c.service == "provisioner" and c.path.startswith(prefix)]


async def test_the_link_hands_on_the_content_and_the_clients_headers(redis, gateway_settings,
                                                                      services):
    services.set("provisioner", "GET", rf"/internal/sub/{TOKEN}", 200, "dm1lc3M6Ly94",
                 {"subscription-userinfo": USERINFO, "profile-update-interval": "12",
                  "content-disposition": 'attachment; filename="VPN"', "x-internal": "no"})
    app = create_api(gateway_settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://gw") as anyone:
        r = await anyone.get(f"/api/v1/sub/{TOKEN}", headers={"user-agent": "Happ/3.1"})
        assert r.status_code == 200 and r.json() == "dm1lc3M6Ly94"
        assert r.headers["subscription-userinfo"] == USERINFO
        assert r.headers["profile-update-interval"] == "12"
        assert r.headers["content-disposition"] == 'attachment; filename="VPN"'
        assert r.headers["content-type"] == "application/json; charset=utf-8"  # as served
        assert r.headers["cache-control"] == "no-store" and "x-internal" not in r.headers
        call = provisioner_calls(services, "/internal/sub/")[-1]
        assert call.role == "SERVICE" and call.path == f"/internal/sub/{TOKEN}"
        assert call.headers["X-Client-User-Agent"] == "Happ/3.1"  # the panel picks by it

        missing = await anyone.get("/api/v1/sub/unknown-token")
        assert missing.status_code == 404 and missing.json()["code"] == "NOT_FOUND"

        services.set("provisioner", "GET", rf"/internal/sub/{TOKEN}", 503,
                     {"code": "SERVICE_UNAVAILABLE", "message": "The VPN server is unavailable"},
                     {"Retry-After": "30"})
        away = await anyone.get(f"/api/v1/sub/{TOKEN}")
        assert away.status_code == 503 and away.headers["retry-after"] == "30"
        assert away.json()["code"] == "SERVICE_UNAVAILABLE"
    await app.state.clients.close()
    await app.state.db.dispose()


async def test_the_link_is_rate_limited_per_token_and_per_address(redis, gateway_settings,
                                                                  services):
    services.set("provisioner", "GET", r"/internal/sub/[^/]+", 200, "x")
    app = create_api(gateway_settings.model_copy(update={
        "sub_link_per_token_per_minute": 3, "sub_link_per_ip_per_minute": 5}))
    app.state.limiter = app.state.limits.limiter = RateLimiter(redis)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://gw") as anyone:
        codes = [(await anyone.get(f"/api/v1/sub/{TOKEN}")).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        other = [(await anyone.get(f"/api/v1/sub/{'B' * 43}")).status_code for _ in range(2)]
        assert other == [200, 429]  # the address's 5 are used up
        r = await anyone.get(f"/api/v1/sub/{'C' * 43}")
        assert r.status_code == 429 and r.json()["code"] == "RATE_LIMITED"
        assert int(r.headers["retry-after"]) >= 1
    assert len(provisioner_calls(services, "/internal/sub/")) == 4
    await app.state.clients.close()
    await app.state.db.dispose()


async def test_the_owner_rotates_and_revokes_as_themselves(customer, services):
    r = await customer.post("/api/v1/subscriptions/s1/link", headers=JSON)
    assert r.status_code == 200 and r.json() == {"link": LINK}
    r = await customer.delete("/api/v1/subscriptions/s1/link", headers=JSON)
    assert r.status_code == 204 and r.content == b""
    calls = provisioner_calls(services, "/internal/subscriptions/s1/link")
    assert [(c.method, c.user_id, c.role) for c in calls] == [
        ("POST", customer.user_id, "USER"), ("DELETE", customer.user_id, "USER")]
    # Someone else's subscription: the provisioner's 404, handed on.
    r = await customer.post("/api/v1/subscriptions/not-mine/link", headers=JSON)
    assert r.status_code == 404 and r.json()["code"] == "NOT_FOUND"
    missing = await customer.delete("/api/v1/subscriptions/not-mine/link", headers=JSON)
    assert missing.status_code == 404


async def test_the_access_page_shows_the_link_its_qr_and_the_apps_for_the_platform(
        customer, services):
    access = {"backend": "sandbox", "access_url": "ss://key", "config": {},
              "fetched_at": "2026-12-01T12:00:00+00:00", **LINK, "apps": [
                  *LINK["apps"],
                  {"id": "v2rayng", "name": "v2rayNG", "platforms": ["android"],
                   "import_url": "v2rayng://install-config?url=x", "open_url": "http://x/y"},
                  {"id": "streisand", "name": "Streisand", "platforms": ["ios"],
                   "import_url": "streisand://import/x", "open_url": "http://x/z"}]}
    services.set("provisioner", "GET", r"/internal/subscriptions/s1/access", 200, access)
    iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15"
    page = await customer.get("/app/access", headers={"user-agent": iphone})
    assert page.status_code == 200
    html = page.text
    assert LINK["subscription_url"] in html and "<svg" in html
    mine, _, others = html.partition("<summary>")
    assert 'data-app="happ"' in mine and 'data-app="streisand"' in mine
    assert 'data-app="v2rayng"' not in mine and 'data-app="v2rayng"' in others
    r = await customer.post("/app/subscriptions/s1/link",
                            data={"csrf_token": customer.csrf, "action": "rotate"})
    assert r.status_code == 303 and r.headers["location"] == "/app/access?done=link_rotated"
    assert provisioner_calls(services, "/internal/subscriptions/s1/link")[-1].method == "POST"


async def test_staff_rotate_and_revoke_are_audited_and_customers_cannot(db, redis,
                                                                        gateway_settings,
                                                                        services, pg, customer):
    services.set("provisioner", "POST", r"/internal/admin/subscriptions/s1/link", 200,
                 {"link": LINK})
    services.set("provisioner", "DELETE", r"/internal/admin/subscriptions/s1/link", 204, None)
    refused = await customer.post("/api/v1/admin/subscriptions/s1/link", headers=JSON)
    assert refused.status_code == 403
    support = await signed_in(db, gateway_settings, "SUPPORT")
    try:
        r = await support.post("/api/v1/admin/subscriptions/s1/link", headers=JSON)
        assert r.status_code == 200 and r.json() == {"link": LINK}
        revoked = await support.delete("/api/v1/admin/subscriptions/s1/link", headers=JSON)
        assert revoked.status_code == 204
    finally:
        await close(support)
    rows = await pg.fetch("SELECT action, target_id, outcome, details::text AS d "
                          "FROM identity.audit_log WHERE action LIKE 'subscription.link_%' "
                          "ORDER BY id")
    assert [(x["action"], x["target_id"], x["outcome"]) for x in rows] == [
        ("subscription.link_rotate", "s1", "success"),
        ("subscription.link_revoke", "s1", "success")]
    assert all(TOKEN not in (x["d"] or "") for x in rows)


async def test_locations_are_public_and_the_import_page_opens_the_app(redis, gateway_settings,
                                                                     services):
    services.set("provisioner", "GET", r"/internal/locations", 200, {"locations": [
        {"id": "de-fra", "name": "Frankfurt", "country": "DE"}]})
    app = create_api(gateway_settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://gw") as anyone:
        r = await anyone.get("/api/v1/locations")
        assert r.status_code == 200
        assert r.json() == [{"id": "de-fra", "name": "Frankfurt", "country": "DE"}]
        page = await anyone.get(f"/import/happ/{TOKEN}")
        target = f"happ://add/{gateway_settings.app_base_url}/api/v1/sub/{TOKEN}"
        assert page.status_code == 200 and page.headers["refresh"] == f"0; url={target}"
        assert f'href="{target}"' in page.text
        assert (await anyone.get(f"/import/nosuchapp/{TOKEN}")).status_code == 404
        assert (await anyone.get("/import/happ/not-a-token")).status_code == 404
    await app.state.clients.close()
    await app.state.db.dispose()


async def test_the_admin_panel_rotates_a_customers_link_through_the_same_action(
        db, redis, gateway_settings, services, pg):
    services.set("provisioner", "POST", r"/internal/admin/subscriptions/s1/link", 200,
                 {"link": LINK})
    services.set("provisioner", "GET", r"/internal/admin/subscriptions", 200,
                 {"subscriptions": [{"id": "s1", "plan_id": "p1", "status": "ACTIVE",
                                     "started_at": "2026-12-01T12:00:00+00:00",
                                     "expires_at": "2026-12-31T12:00:00+00:00",
                                     "max_devices": 3, "user_id": "u1", "backend": "sandbox",
                                     "suspend_reason": None,
                                     "created_at": "2026-12-01T12:00:00+00:00",
                                     "updated_at": "2026-12-01T12:00:00+00:00"}],
                  "next_cursor": None})
    query = ("SELECT count(*) FROM identity.audit_log WHERE action = 'subscription.link_rotate' "
             "AND outcome = 'success'")
    before = await pg.fetchval(query)
    admin = await signed_in(db, gateway_settings, "ADMIN")
    try:
        page = await admin.get("/admin/subscriptions")
        assert page.status_code == 200 and 'action="/admin/subscriptions/s1/link"' in page.text
        r = await admin.post("/admin/subscriptions/s1/link", data={"csrf_token": admin.csrf})
        assert r.status_code == 303
        assert r.headers["location"].endswith("done=subscription_link_rotated")
    finally:
        await close(admin)
    assert await pg.fetchval(query) == before + 1


@pytest.mark.parametrize("agent,platform", [
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X)", "ios"),
    ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36", "android"),
    ("Mozilla/5.0 (Linux; Android 12; BRAVIA 4K) AppleWebKit/537.36", "androidtv"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36", "windows"),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15", "macos"),
    ("Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/133.0", "linux"),
    ("curl/8.5.0", None), (None, None)])
def test_the_platform_comes_from_the_user_agent(agent, platform):
    from gateway.web import views

    assert views.platform_of(agent) == platform
    apps = [{"id": "happ", "platforms": ["ios", "android"]}, {"id": "v2rayng",
                                                              "platforms": ["android"]}]
    mine, others = views.apps_for(apps, platform)
    if platform is None:  # nothing known: every app shown
        assert (mine, others) == (apps, [])
    else:
        assert all(platform in a["platforms"] for a in mine) and len(mine) + len(others) == 2
        assert all(platform not in a["platforms"] for a in others)
