"""`/api/v1/admin/servers` and the admin panel's `/admin/servers`: both go through the typed
provisioner client and `gateway.actions` (one audit entry, never the credentials), ADMIN only.
The real gateway app with real sessions, its clients calling real HTTP servers for the
services (fake_services.py)."""

from __future__ import annotations

import json

import httpx
import pytest
from gateway_tests_factories import PASSWORD, add_user

from gateway.app import create_api
from gateway.security import csrf_token

NOW = "2026-12-01T12:00:00+00:00"
SERVER = {"id": "srv1", "name": "de-1", "location": "de-fra", "backend": "marzban",
          "base_url": "https://panel.test", "settings": {"proxies": ["vless"]}, "capacity": 20,
          "load": 3, "status": "ACTIVE", "healthy": True, "has_credentials": True,
          "created_at": NOW, "updated_at": NOW}
SECRET = "panel-password-never-shown"


async def signed_in(db, settings, role: str) -> httpx.AsyncClient:
    app = create_api(settings)
    user = await add_user(db, role)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                               base_url="http://gw")
    r = await client.post("/api/v1/auth/login", json={"email": f"{user}@example.com",
                                                      "password": PASSWORD})
    assert r.status_code == 200, r.text
    client.user_id = user
    client.app = app
    client.csrf = csrf_token(settings.internal_signing_key,
                             client.cookies[settings.session_cookie])
    return client


@pytest.fixture
async def admin(db, redis, gateway_settings, services):
    services.set("provisioner", "GET", r"/internal/admin/servers", 200, {"servers": [SERVER]})
    services.set("provisioner", "POST", r"/internal/admin/servers", 201, {"server": SERVER})
    services.set("provisioner", "PATCH", r"/internal/admin/servers/[^/]+", 200,
                 {"server": {**SERVER, "capacity": 30, "status": "DRAINING"}})
    client = await signed_in(db, gateway_settings, "ADMIN")
    yield client
    await client.aclose()
    await client.app.state.clients.close()
    await client.app.state.db.dispose()


def sent(services, method: str) -> list[dict]:
    return [json.loads(c.body) for c in services.calls
            if c.service == "provisioner" and c.method == method
            and c.path.startswith("/internal/admin/servers")]


async def audit(pg, action: str) -> list[dict]:
    rows = await pg.fetch("SELECT action, target_id, outcome, details::text AS d "
                          "FROM identity.audit_log WHERE action = $1 ORDER BY id", action)
    return [dict(r) for r in rows]


async def test_the_api_lists_creates_and_changes_servers_and_never_audits_credentials(
        admin, services, pg):
    r = await admin.get("/api/v1/admin/servers")
    assert r.status_code == 200 and r.json()["servers"][0]["name"] == "de-1"
    r = await admin.post("/api/v1/admin/servers", json={
        "name": "de-1", "location": "de-fra", "backend": "marzban",
        "base_url": "https://panel.test", "capacity": 20, "settings": {"proxies": ["vless"]},
        "credentials": {"username": "root", "password": SECRET}})
    assert r.status_code == 201, r.text
    assert SECRET not in r.text and "credentials" not in r.json()["server"]
    assert sent(services, "POST")[-1]["credentials"] == {"username": "root", "password": SECRET}
    r = await admin.patch("/api/v1/admin/servers/srv1",
                          json={"capacity": 30, "status": "DRAINING"})
    assert r.status_code == 200 and r.json()["server"]["status"] == "DRAINING"
    assert sent(services, "PATCH")[-1] == {"capacity": 30, "status": "DRAINING"}
    created, updated = await audit(pg, "server.create"), await audit(pg, "server.update")
    assert [e["outcome"] for e in created] == ["success"] and SECRET not in created[0]["d"]
    assert updated[-1]["target_id"] == "srv1" and json.loads(updated[-1]["d"]) == {
        "capacity": 30, "status": "DRAINING", "fields": ["capacity", "status"]}


async def test_bad_server_bodies_are_refused_before_the_provisioner(admin, services):
    for body in ({"name": "x", "location": "DE FRA", "backend": "sandbox", "capacity": 1},
                 {"name": "x", "location": "de", "backend": "wireguard", "capacity": 1},
                 {"name": "x", "location": "de", "backend": "sandbox", "capacity": -1}):
        r = await admin.post("/api/v1/admin/servers", json=body)
        assert r.status_code == 400 and r.json()["code"] == "VALIDATION_ERROR", r.text
    assert (await admin.patch("/api/v1/admin/servers/srv1", json={})).status_code == 400
    assert (await admin.patch("/api/v1/admin/servers/srv1",
                              json={"capacity": None})).status_code == 400
    assert sent(services, "POST") == [] and sent(services, "PATCH") == []


async def test_only_an_admin_reaches_the_pool(db, redis, gateway_settings, services):
    support = await signed_in(db, gateway_settings, "SUPPORT")
    try:
        assert (await support.get("/api/v1/admin/servers")).status_code == 403
        assert (await support.get("/admin/servers")).status_code == 403
    finally:
        await support.aclose()
        await support.app.state.clients.close()
        await support.app.state.db.dispose()
    assert sent(services, "GET") == []


async def test_the_panel_page_shows_the_pool_and_adds_a_server_through_the_same_action(
        admin, services, pg):
    page = await admin.get("/admin/servers")
    assert page.status_code == 200
    assert 'data-server="de-1"' in page.text and "3 / 20" in page.text
    r = await admin.post("/admin/servers", data={
        "csrf_token": admin.csrf, "name": "de-2", "location": "de-fra", "backend": "marzban",
        "base_url": "https://panel2.test", "capacity": "10", "settings": '{"proxies": ["vless"]}',
        "username": "root", "password": SECRET, "api_token": ""})
    assert r.status_code == 303 and r.headers["location"] == "/admin/servers?done=server_created"
    assert sent(services, "POST")[-1] == {
        "name": "de-2", "location": "de-fra", "backend": "marzban",
        "base_url": "https://panel2.test", "settings": {"proxies": ["vless"]},
        "credentials": {"username": "root", "password": SECRET}, "capacity": 10,
        "status": "ACTIVE"}
    bad = await admin.post("/admin/servers", data={
        "csrf_token": admin.csrf, "name": "de-3", "location": "de-fra", "backend": "sandbox",
        "capacity": "10", "settings": "not json", "password": SECRET})
    assert bad.status_code == 400 and "JSON object" in bad.text
    assert SECRET not in bad.text  # a credential is never put back in the page
    r = await admin.post("/admin/servers/srv1", data={"csrf_token": admin.csrf,
                                                      "capacity": "30", "status": "DRAINING"})
    assert r.status_code == 303
    assert sent(services, "PATCH")[-1] == {"capacity": 30, "status": "DRAINING"}
    assert [e["outcome"] for e in await audit(pg, "server.create")
            if '"de-2"' in e["d"]] == ["success"]


async def test_a_drain_goes_through_the_audited_action_from_the_api_and_the_panel(
        admin, services, pg):
    drained = {"server": {**SERVER, "status": "DRAINING"},
               "progress": {"holding": 3, "waiting": 0, "pending": 0, "switched": 0}}
    services.set("provisioner", "POST", r"/internal/admin/servers/[^/]+/drain", 202, drained)
    r = await admin.post("/api/v1/admin/servers/srv1/drain",
                         headers={"Content-Type": "application/json"})
    assert r.status_code == 202 and r.json()["progress"]["holding"] == 3
    page = await admin.get("/admin/servers")
    assert 'data-testid="server-drain"' in page.text
    r = await admin.post("/admin/servers/srv1/drain", data={"csrf_token": admin.csrf})
    assert r.status_code == 303 and r.headers["location"] == "/admin/servers?done=server_draining"
    calls = [c.path for c in services.calls if c.method == "POST" and c.path.endswith("/drain")]
    assert calls == ["/internal/admin/servers/srv1/drain"] * 2
    assert [(e["target_id"], e["outcome"]) for e in await audit(pg, "server.drain")] == [
        ("srv1", "success")] * 2
