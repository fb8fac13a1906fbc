"""What the plan pages promise, from what the VPN backend enforces (asked of the provisioner
through its client, kept a minute): the device limit where the backend enforces it, a plain
"not limited" where it cannot (Marzban, Outline), neither while the provisioner cannot say;
and the Remnawave panel's webhook relayed to the provisioner as its exact bytes. The real
gateway app against the services as real HTTP servers (fake_services.py)."""

from __future__ import annotations

import httpx
import pytest

from gateway.app import create_api
from runtime import identity

CAPS = r"/internal/backend"


@pytest.fixture
async def app(db, gateway_settings):
    # Nothing here writes to Redis (no sign-in, no rate-limited write): any database index
    # will do, so the suite's slots past Redis' 16 databases can run it too.
    settings = gateway_settings.model_copy(update={"redis_url": "redis://127.0.0.1:6379/0"})
    application = create_api(settings)
    yield application
    await application.state.clients.close()
    await application.state.db.dispose()


def client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")


async def landing(app) -> str:
    async with client(app) as c:
        r = await c.get("/", headers={"Accept-Language": "en"})
    assert r.status_code == 200
    return r.text


async def test_the_device_limit_is_promised_only_where_the_backend_enforces_it(app, services):
    services.set("provisioner", "GET", CAPS, 200, {
        "backend": "remnawave", "enforces_devices": True, "enforces_traffic": True})
    page = await landing(app)
    assert "up to 3 devices" in page and "devices-not-limited" not in page

    app.state.clients.provisioner._capabilities = None  # another deployment
    services.set("provisioner", "GET", CAPS, 200, {
        "backend": "marzban", "enforces_devices": False, "enforces_traffic": True})
    page = await landing(app)
    assert "up to 3 devices" not in page and "30 days" in page
    assert "The number of devices is not limited on our servers." in page
    await landing(app)
    asked = [c for c in services.calls if c.service == "provisioner" and c.path == CAPS]
    assert len(asked) == 2  # the second answer was kept

    app.state.clients.provisioner._capabilities = None
    services.set("provisioner", "GET", CAPS, 503, {"code": "SERVICE_UNAVAILABLE",
                                                   "message": "down"})
    page = await landing(app)  # the page still shows the plans, promising nothing
    assert "30 days" in page and "up to 3 devices" not in page
    assert "devices-not-limited" not in page


async def test_the_remnawave_webhook_is_relayed_as_its_exact_bytes(app, services):
    services.set("provisioner", "POST", r"/internal/webhooks/remnawave", 200, {"ok": True})
    raw = b'{"scope":"user","event":"user.limited","data":{"username":"vpn_x"}}'
    forged = identity.sign(services.settings()["INTERNAL_SIGNING_KEY"], "evil", "ADMIN",
                           audience="provisioner")
    async with client(app) as c:
        r = await c.post("/api/v1/vpn/webhooks/remnawave", content=raw, headers={
            "X-Remnawave-Signature": "ab" * 32, "Content-Type": "application/json",
            identity.HEADER: forged})
    assert r.status_code == 200 and r.json() == {"ok": True}
    call = services.calls[-1]
    assert (call.service, call.path, call.body) == ("provisioner",
                                                    "/internal/webhooks/remnawave", raw)
    assert (call.user_id, call.role) == ("remnawave", "SERVICE")
    assert call.headers["x-remnawave-signature"] == "ab" * 32

    services.set("provisioner", "POST", r"/internal/webhooks/remnawave", 401, {
        "code": "UNAUTHENTICATED", "message": "The webhook signature does not match"})
    async with client(app) as c:
        r = await c.post("/api/v1/vpn/webhooks/remnawave", content=raw)
    assert r.status_code == 401 and r.json()["code"] == "UNAUTHENTICATED"
