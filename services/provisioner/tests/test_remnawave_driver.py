"""The Remnawave driver against the fake Remnawave panel over real HTTP (proxy check on), and
one subscription's life through the provisioning service on it."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
import sqlalchemy as sa

from contracts.billing import InvoicePaidV1, InvoiceRefundedV1, PlanSnapshot
from fakes.remnawave import RemnawaveFake, create_app
from provisioner.backends import AccountMissing, BackendError
from provisioner.backends.remnawave import RemnawaveBackend, next_month_start
from provisioner.models import Subscription
from provisioner.service import ProvisioningService
from runtime.identity import Identity
from runtime.testing import serve_in_thread

TOKEN = "rw-api-token-0123456789"
SQUAD = "5a1f2b3c-0000-4000-8000-00000000aa01"
LATER = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)
GB = 2**30


@pytest.fixture(scope="module")
def panel():
    fake = RemnawaveFake(token=TOKEN, squads={SQUAD: "Default-Squad"})
    with serve_in_thread(create_app(fake), lifespan="off") as url:
        yield fake, url


@pytest.fixture
async def control(panel):
    fake, url = panel
    fake.reset()
    fake.development = False
    async with httpx.AsyncClient(base_url=f"{url}/_fake", timeout=5) as client:
        yield client


@pytest.fixture
async def driver(panel, control):
    _, url = panel
    backend = RemnawaveBackend(url, TOKEN, squads=[SQUAD], data_limit_bytes=0, timeout=5)
    yield backend
    await backend.close()


async def users(control) -> dict[str, dict]:
    return {u["username"]: u for u in (await control.get("/users")).json()["users"]}


async def calls(control, op: str) -> list[dict]:
    return (await control.get("/calls", params={"op": op})).json()["calls"]


async def test_create_sends_limits_squads_and_the_forwarded_headers(driver, control, panel):
    _, url = panel
    await driver.ensure_active("vpn_r1", expires_at=LATER, max_devices=3,
                               data_limit_bytes=50 * GB, traffic_reset="MONTH")
    user = (await users(control))["vpn_r1"]
    assert user["status"] == "ACTIVE"
    assert user["expireAt"].startswith(LATER.strftime("%Y-%m-%dT%H:%M:%S"))
    assert (user["trafficLimitBytes"], user["trafficLimitStrategy"]) == (50 * GB, "MONTH")
    assert user["hwidDeviceLimit"] == 3
    assert user["activeInternalSquads"] == [{"uuid": SQUAD, "name": "Default-Squad"}]
    # the same call again: 400 A019, then found by username and updated, still one user
    later = LATER + timedelta(days=30)
    await driver.ensure_active("vpn_r1", expires_at=later, max_devices=5)
    user = (await users(control))["vpn_r1"]
    assert len(await users(control)) == 1 and user["hwidDeviceLimit"] == 5
    assert user["expireAt"].startswith(later.strftime("%Y-%m-%dT%H:%M:%S"))
    assert (user["trafficLimitBytes"], user["trafficLimitStrategy"]) == (0, "NO_RESET")
    assert [c["op"] for c in await calls(control, "update")] == ["update"]
    # without the forwarded headers the panel cuts the connection: no HTTP answer at all
    async with httpx.AsyncClient(base_url=url, timeout=5) as bare:
        with pytest.raises(httpx.TransportError):
            await bare.get("/api/users", headers={"Authorization": f"Bearer {TOKEN}"})


async def test_a_lost_create_answer_is_retried_to_one_user(driver, control):
    """The panel created the user but the connection dropped before the answer arrived."""
    await control.post("/faults", json={"op": "create", "after": True, "drop": True,
                                        "times": 1})
    with pytest.raises(BackendError) as info:
        await driver.ensure_active("vpn_r2", expires_at=LATER, max_devices=2)
    assert "transport error" in str(info.value)
    assert list(await users(control)) == ["vpn_r2"]  # it was created
    await driver.ensure_active("vpn_r2", expires_at=LATER, max_devices=2)
    assert list(await users(control)) == ["vpn_r2"] and len(await calls(control, "create")) == 2


async def test_twenty_concurrent_grants_make_one_user(driver, control):
    await control.post("/settings", json={"create_delay_ms": 200})  # creates in flight together
    await asyncio.gather(*(driver.ensure_active("vpn_r3", expires_at=LATER, max_devices=2)
                           for _ in range(20)))
    found = await users(control)
    assert list(found) == ["vpn_r3"] and found["vpn_r3"]["status"] == "ACTIVE"
    assert len(await calls(control, "create")) == 20
    assert len(await calls(control, "update")) == 19  # every loser got A019 and converged


async def test_disable_keeps_the_user_and_a_grant_brings_it_back(driver, control):
    await driver.ensure_active("vpn_r4", expires_at=LATER, max_devices=1)
    url = (await driver.access("vpn_r4")).access_url
    await driver.disable("vpn_r4")
    assert (await users(control))["vpn_r4"]["status"] == "DISABLED"
    assert await driver.accounts() == {"vpn_r4": False}
    await driver.disable("vpn_r4")  # already disabled: nothing to do
    await driver.disable("vpn_missing")  # no user: already disabled
    assert len(await calls(control, "disable")) == 1
    await driver.ensure_active("vpn_r4", expires_at=LATER, max_devices=1)
    assert await driver.accounts() == {"vpn_r4": True}
    assert (await driver.access("vpn_r4")).access_url == url  # the same subscription URL


async def test_access_is_the_live_subscription_url(driver, control):
    await driver.ensure_active("vpn_r5", expires_at=LATER, max_devices=1)
    access = await driver.access("vpn_r5")
    user = (await users(control))["vpn_r5"]
    assert access.access_url == user["subscriptionUrl"]
    assert access.access_url.startswith("https://") and access.config["status"] == "ACTIVE"
    revoked = await driver.revoke("vpn_r5")  # a leaked link: a new one, the old one dead
    assert revoked.access_url != access.access_url
    assert (await driver.access("vpn_r5")).access_url == revoked.access_url
    with pytest.raises(AccountMissing):
        await driver.access("vpn_nobody")
    with pytest.raises(AccountMissing):
        await driver.usage("vpn_nobody")


async def test_accounts_pages_through_every_user(driver, control, panel, monkeypatch):
    fake, _ = panel
    monkeypatch.setattr("provisioner.backends.remnawave.PAGE", 2)
    for i in range(5):
        await driver.ensure_active(f"vpn_p{i}", expires_at=LATER, max_devices=1)
    # someone else's user on the same panel is left alone
    fake.development = True
    async with httpx.AsyncClient(base_url=str(driver._base), timeout=5) as c:
        r = await c.post("/api/users", headers={"Authorization": f"Bearer {TOKEN}"},
                         json={"username": "alice", "expireAt": LATER.isoformat()})
        assert r.status_code == 201
    fake.development = False
    await driver.disable("vpn_p3")
    assert await driver.accounts() == {"vpn_p0": True, "vpn_p1": True, "vpn_p2": True,
                                       "vpn_p3": False, "vpn_p4": True}
    assert len(await calls(control, "list")) == 3  # 6 users, 2 a page
    await driver.probe()  # the health check: one page, however many users
    assert len(await calls(control, "list")) == 4


async def test_panel_failures_and_a_hang_are_backend_errors_without_secrets(driver, control,
                                                                            panel):
    _, url = panel
    await control.post("/faults", json={"op": "create", "status": 500, "times": 1})
    with pytest.raises(BackendError) as info:
        await driver.ensure_active("vpn_r6", expires_at=LATER, max_devices=1)
    assert info.value.status == 500 and TOKEN not in str(info.value)
    await driver.ensure_active("vpn_r6", expires_at=LATER, max_devices=1)  # a retry succeeds
    assert (await users(control))["vpn_r6"]["status"] == "ACTIVE"
    with pytest.raises(BackendError) as info:  # the panel refuses a past expiry on an update
        await driver.ensure_active("vpn_r6", expires_at=datetime.now(UTC) - timedelta(days=1),
                                   max_devices=1)
    assert info.value.status == 400 and "invalid expireAt" in str(info.value)

    await control.post("/faults", json={"op": "*", "delay_ms": 2000, "status": None,
                                        "times": 1})
    quick = RemnawaveBackend(url, TOKEN, squads=[SQUAD], timeout=0.3)
    try:
        with pytest.raises(BackendError) as info:
            await quick.accounts()
        assert "transport error" in str(info.value)
    finally:
        await quick.close()

    wrong = RemnawaveBackend(url, "not-the-token", squads=[SQUAD], timeout=5)
    try:
        with pytest.raises(BackendError) as info:
            await wrong.accounts()
        assert info.value.status == 401 and "not-the-token" not in str(info.value)
    finally:
        await wrong.close()

    down = RemnawaveBackend("http://127.0.0.1:9", TOKEN, squads=[SQUAD], timeout=2)
    try:
        with pytest.raises(BackendError) as info:
            await down.ensure_active("vpn_r6", expires_at=LATER, max_devices=1)
        assert TOKEN not in str(info.value) and "127.0.0.1" not in str(info.value)
    finally:
        await down.close()


async def test_an_unknown_squad_is_a_configuration_error(panel, control):
    _, url = panel
    backend = RemnawaveBackend(url, TOKEN, squads=[str(uuid.uuid4())], timeout=5)
    try:
        with pytest.raises(BackendError) as info:
            await backend.ensure_active("vpn_r7", expires_at=LATER, max_devices=1)
        assert info.value.status == 500 and "A018" in str(info.value)
        assert "REMNAWAVE_SQUADS" in str(info.value)
    finally:
        await backend.close()


async def test_a_limited_user_is_reset_and_usable_again_on_regrant(driver, control):
    await driver.ensure_active("vpn_r8", expires_at=LATER, max_devices=2,
                               data_limit_bytes=10 * GB, traffic_reset="MONTH")
    r = await control.post("/users/vpn_r8/traffic", json={"used_bytes": 10 * GB})
    assert r.json()["status"] == "LIMITED"  # the panel enforces the allowance
    assert await driver.accounts() == {"vpn_r8": True}  # not drift: nothing to repair
    usage = await driver.usage("vpn_r8")
    assert usage.limited and (usage.used_bytes, usage.limit_bytes) == (10 * GB, 10 * GB)
    assert usage.resets_at == next_month_start(datetime.now(UTC))
    await driver.ensure_active("vpn_r8", expires_at=LATER + timedelta(days=30), max_devices=2,
                               data_limit_bytes=10 * GB, traffic_reset="MONTH")
    user = (await users(control))["vpn_r8"]
    assert user["status"] == "ACTIVE" and user["userTraffic"]["usedTrafficBytes"] == 0
    assert not (await driver.usage("vpn_r8")).limited
    # marked limited by the panel, and an unlimited plan after it: reset and active as well
    await control.post("/users/vpn_r8/limited")
    await driver.ensure_active("vpn_r8", expires_at=LATER, max_devices=2)
    assert (await users(control))["vpn_r8"]["status"] == "ACTIVE"


async def test_an_expired_user_is_active_again_on_regrant(driver, control):
    await driver.ensure_active("vpn_r9", expires_at=LATER, max_devices=1)
    await control.post("/users/vpn_r9/expired")
    assert await driver.accounts() == {"vpn_r9": False}
    await driver.ensure_active("vpn_r9", expires_at=LATER, max_devices=1)
    assert (await users(control))["vpn_r9"]["status"] == "ACTIVE"


async def test_the_device_limit_is_the_panels_hwid_limit_and_usage_counts_devices(driver,
                                                                                  control):
    assert driver.enforces_devices and driver.enforces_traffic
    await driver.ensure_active("vpn_r10", expires_at=LATER, max_devices=2)
    for hwid in ("phone", "laptop"):
        r = await control.post("/users/vpn_r10/devices", json={"hwid": hwid})
        assert r.status_code == 200
    r = await control.post("/users/vpn_r10/devices", json={"hwid": "tablet"})
    assert r.status_code == 409  # the third device is refused by the panel
    await control.post("/users/vpn_r10/traffic", json={"used_bytes": 12345})
    usage = await driver.usage("vpn_r10")
    assert (usage.devices_limit, usage.devices_used) == (2, 2)
    assert (usage.used_bytes, usage.limit_bytes, usage.resets_at) == (12345, None, None)
    assert not usage.limited
    await driver.ensure_active("vpn_r10", expires_at=LATER, max_devices=3)  # a bigger plan
    assert (await control.post("/users/vpn_r10/devices", json={"hwid": "tablet"})
            ).status_code == 200
    assert (await driver.usage("vpn_r10")).devices_used == 3


async def test_the_panels_signed_webhook_tells_of_a_limited_and_an_expired_user(driver,
                                                                                control):
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    from provisioner.backends.remnawave import PanelEvent, WebhookRejected, parse_webhook

    received: list[tuple[bytes, dict]] = []
    failed_once: list[bool] = []

    async def hook(request):
        if not failed_once:  # the panel tries again after a failed delivery
            failed_once.append(True)
            return Response(status_code=503)
        received.append((await request.body(), dict(request.headers)))
        return Response(status_code=200)

    secret = "s" * 64
    with serve_in_thread(Starlette(routes=[Route("/hook", hook, methods=["POST"])]),
                         lifespan="off") as hook_url:
        await control.post("/settings", json={"webhook_url": f"{hook_url}/hook",
                                              "webhook_secret": secret,
                                              "webhook_retry_delay_ms": 50})
        await driver.ensure_active("vpn_w1", expires_at=LATER, max_devices=1,
                                   data_limit_bytes=GB)
        await control.post("/users/vpn_w1/traffic", json={"used_bytes": GB})
        for _ in range(100):
            if received:
                break
            await asyncio.sleep(0.05)
        await driver.ensure_active("vpn_w2", expires_at=LATER, max_devices=1)
        await control.post("/users/vpn_w2/expired")
        for _ in range(100):
            if len(received) == 2:
                break
            await asyncio.sleep(0.05)
    assert len(received) == 2
    (raw, headers), (raw2, headers2) = received
    assert headers["user-agent"] == "Remnawave" and headers["x-remnawave-timestamp"]
    event = parse_webhook(raw, headers["x-remnawave-signature"], secret)
    assert event == PanelEvent("user.limited", "vpn_w1", "LIMITED",
                               headers["x-remnawave-timestamp"])
    assert parse_webhook(raw2, headers2["x-remnawave-signature"], secret).event == "user.expired"
    with pytest.raises(WebhookRejected):  # a changed body
        parse_webhook(raw.replace(b"vpn_w1", b"vpn_w9"), headers["x-remnawave-signature"],
                      secret)
    with pytest.raises(WebhookRejected):  # another secret
        parse_webhook(raw, headers["x-remnawave-signature"], "t" * 64)
    with pytest.raises(WebhookRejected):
        parse_webhook(raw, None, secret)


# ---------------------------------------------------------------- through the service

NOW = datetime.now(UTC).replace(microsecond=0)


def paid(user_id: str, days: int = 30, traffic_gb: int | None = None) -> InvoicePaidV1:
    return InvoicePaidV1(
        invoice_id=uuid.uuid4().hex, user_id=user_id,
        plan=PlanSnapshot(plan_id="plan-m", name="Monthly", duration_days=days, max_devices=3,
                          price_usd=Decimal("9.99"), traffic_limit_gb=traffic_gb,
                          traffic_reset="MONTH" if traffic_gb else "NONE"),
        amount_usd=Decimal("9.99"), asset="USDT", network="TRON", amount_asset=Decimal("9.99"),
        amount_paid_asset=Decimal("9.99"), paid_at=NOW)


async def buy(db, service, ev: InvoicePaidV1) -> None:
    async with db.transaction() as s:
        await service.record_paid(s, ev, NOW)
    async with db.transaction() as s:
        assert (await service.apply_grant(s, ev.invoice_id, NOW)).outcome


async def test_grant_access_usage_refund_and_expiry_through_the_service(db, driver, control):
    service = ProvisioningService(driver)
    first, second = paid("rw-u1"), paid("rw-u2", days=2)
    for ev in (first, second):
        await buy(db, service, ev)
    async with db.transaction() as s:
        subs = {x.user_id: x for x in (await s.execute(sa.select(Subscription))).scalars()}
    ref = subs["rw-u1"].provision_ref
    user = (await users(control))[ref]
    assert user["status"] == "ACTIVE" and user["hwidDeviceLimit"] == 3
    async with db.transaction() as s:
        out = await service.access(s, Identity("rw-u1", "USER"), subs["rw-u1"].id)
    assert out["backend"] == "remnawave" and out["access_url"] == user["subscriptionUrl"]

    refund = InvoiceRefundedV1(invoice_id=first.invoice_id, user_id="rw-u1", plan=first.plan,
                               reason="customer asked", refunded_at=NOW)
    async with db.transaction() as s:
        await service.record_refund(s, refund, NOW + timedelta(hours=1))
    async with db.transaction() as s:
        assert await service.apply_refund(s, first.invoice_id,
                                          NOW + timedelta(hours=1)) == "revoked"
    assert (await users(control))[ref]["status"] == "DISABLED"

    # disabled in the panel behind our back: reconciliation (through the paged list) repairs it
    other = subs["rw-u2"].provision_ref
    await driver._call("test", "POST", f"/api/users/{(await users(control))[other]['id']}"
                       "/actions/disable")
    assert (await service.reconcile(db, NOW + timedelta(hours=2)))["enabled"] == 1
    assert (await users(control))[other]["status"] == "ACTIVE"
    assert (await users(control))[ref]["status"] == "DISABLED"  # the refunded one stays off

    assert await service.expiry_sweep(db, NOW + timedelta(days=3), 100) == 1
    assert (await users(control))[subs["rw-u2"].provision_ref]["status"] == "DISABLED"


async def test_usage_through_the_service_and_a_renewal_lifts_a_used_up_allowance(db, driver,
                                                                                 control):
    service = ProvisioningService(driver)
    await buy(db, service, paid("rw-u3", traffic_gb=10))
    async with db.transaction() as s:
        sub = (await s.execute(sa.select(Subscription)
                               .where(Subscription.user_id == "rw-u3"))).scalar_one()
    user = (await users(control))[sub.provision_ref]
    assert (user["trafficLimitBytes"], user["trafficLimitStrategy"]) == (10 * GB, "MONTH")
    await control.post(f"/users/{sub.provision_ref}/traffic", json={"used_bytes": 10 * GB})
    await control.post(f"/users/{sub.provision_ref}/devices", json={"hwid": "phone"})
    async with db.transaction() as s:
        out = await service.usage(s, Identity("rw-u3", "USER"), sub.id)
    assert out["limited"] and (out["used_bytes"], out["limit_bytes"]) == (10 * GB, 10 * GB)
    assert out["devices"] == {"limit": 3, "used": 1}
    assert out["resets_at"] == next_month_start(datetime.now(UTC))
    await buy(db, service, paid("rw-u3", traffic_gb=10))  # the renewal
    user = (await users(control))[sub.provision_ref]
    assert user["status"] == "ACTIVE" and user["userTraffic"]["usedTrafficBytes"] == 0
    async with db.transaction() as s:
        assert not (await service.usage(s, Identity("rw-u3", "USER"), sub.id))["limited"]


def test_settings_name_what_the_remnawave_backend_needs_and_build_it():
    from provisioner.backends import build_backend
    from provisioner.config import Settings
    from runtime.testing import unit_database_url

    with pytest.raises(ValueError, match="needs REMNAWAVE_API_TOKEN, REMNAWAVE_SQUADS"):
        Settings(DATABASE_URL=unit_database_url("provisioner"), VPN_BACKEND="remnawave",
                 REMNAWAVE_BASE_URL="https://panel.example")
    settings = Settings(DATABASE_URL=unit_database_url("provisioner"), VPN_BACKEND="remnawave",
                        REMNAWAVE_BASE_URL="https://panel.example/", REMNAWAVE_API_TOKEN=TOKEN,
                        REMNAWAVE_SQUADS=f"{SQUAD}, {SQUAD[:-1]}2")
    backend = build_backend(settings, None)
    assert isinstance(backend, RemnawaveBackend)
    assert backend.squads == [SQUAD, SQUAD[:-1] + "2"]
    assert backend._client.headers["X-Forwarded-Proto"] == "https"
    assert backend._client.headers["Authorization"] == f"Bearer {TOKEN}"
