"""Traffic limits through the provisioning service on every backend (each panel's fake over real
HTTP, the sandbox in Postgres): a plan with an allowance granted, its usage read, the panel
marking the account used up, the limit check making the subscription LIMITED with one
`subscription.limited` event however often it looks, and the renewal's re-grant resetting the
traffic so it is ACTIVE again. Outline counts a rolling 30 days, so there the renewal cannot
reset it: LIMITED lasts until its window falls under the limit. Also the Remnawave webhook and
the sandbox's control endpoint through the provisioner's API."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
import sqlalchemy as sa

from contracts.billing import InvoicePaidV1, PlanSnapshot
from fakes.marzban import create_app as marzban_app
from fakes.outline import create_app as outline_app
from fakes.remnawave import RemnawaveFake
from fakes.remnawave import create_app as remnawave_app
from fakes.xui import create_app as xui_app
from provisioner.app import create_api
from provisioner.backends.marzban import MarzbanBackend
from provisioner.backends.outline import OutlineBackend
from provisioner.backends.remnawave import RemnawaveBackend, next_month_start
from provisioner.backends.sandbox import SandboxBackend
from provisioner.backends.xui import XuiBackend
from provisioner.models import Subscription, outbox
from provisioner.service import ProvisioningService
from runtime import identity
from runtime.identity import Identity
from runtime.testing import serve_in_thread

GB = 2**30
NOW = datetime.now(UTC).replace(microsecond=0)
LIMITED_KEY = "provisioning.subscription.limited.v1"
RW_TOKEN = "rw-api-token-limits"
RW_SQUAD = "5a1f2b3c-0000-4000-8000-00000000bb01"
OUTLINE_SECRET = "limits-secret-path"


@dataclass
class Panel:
    """One backend and how a test drives its fake."""

    backend: object
    use_up: Callable  # async (ref) -> None: the panel counts the allowance used up
    usable: Callable  # async (ref) -> bool: the panel lets the account connect
    accounts: Callable  # async () -> int: accounts of ours on the panel
    lift: Callable | None = None  # async (ref) -> None: the panel's own window/reset lifts it


@pytest.fixture(scope="module")
def marzban_server():
    app = marzban_app(admin_username="admin", admin_password="pw", review_interval=None)
    with serve_in_thread(app, lifespan="off") as url:
        yield app.state.marzban, url


@pytest.fixture(scope="module")
def remnawave_server():
    fake = RemnawaveFake(token=RW_TOKEN, squads={RW_SQUAD: "Default-Squad"})
    with serve_in_thread(remnawave_app(fake), lifespan="off") as url:
        yield fake, url


@pytest.fixture(scope="module")
def xui_server():
    app = xui_app(username="admin", password="pw", base_path="/xui/")
    with serve_in_thread(app, lifespan="off") as url:
        yield app.state.xui, url + "/xui/"


@pytest.fixture(scope="module")
def outline_server(certificates):
    cert, _ = certificates
    app = outline_app(OUTLINE_SECRET, hostname="vpn.example.test")
    with serve_in_thread(app, lifespan="off", ssl_certfile=cert.certfile,
                         ssl_keyfile=cert.keyfile) as url:
        yield app.state.outline, f"{url}/{OUTLINE_SECRET}", cert.sha256


async def _sandbox(db, faults, **_) -> Panel:
    backend = SandboxBackend(db, host="vpn.sandbox.test", port=8388, faults=faults)

    async def use_up(ref):
        await backend.set_used(ref, GB)

    async def usable(ref):
        return not (await backend.usage(ref)).limited

    async def accounts():
        return len(await backend.accounts())

    return Panel(backend, use_up, usable, accounts)


async def _marzban(marzban_server, **_) -> Panel:
    state, url = marzban_server
    state.users.clear()
    backend = MarzbanBackend(url, "admin", "pw", proxies=["vless"], timeout=5)

    async def use_up(ref):
        state.use_traffic(ref, GB)
        state.review()

    async def usable(ref):
        return state.users[ref].status == "active"

    async def accounts():
        return len(state.users)

    return Panel(backend, use_up, usable, accounts)


async def _remnawave(remnawave_server, **_) -> Panel:
    fake, url = remnawave_server
    fake.reset()
    backend = RemnawaveBackend(url, RW_TOKEN, squads=[RW_SQUAD], timeout=5)
    control = httpx.AsyncClient(base_url=f"{url}/_fake", timeout=5)

    async def users():
        return {u["username"]: u for u in (await control.get("/users")).json()["users"]}

    async def use_up(ref):
        r = await control.post(f"/users/{ref}/traffic", json={"used_bytes": GB})
        assert r.json()["status"] == "LIMITED"

    async def usable(ref):
        return (await users())[ref]["status"] == "ACTIVE"

    async def accounts():
        return len(await users())

    panel = Panel(backend, use_up, usable, accounts)
    panel.control = control
    return panel


async def _xui(xui_server, **_) -> Panel:
    state, url = xui_server
    state.reset()
    backend = XuiBackend(url, "admin", "pw", inbound_ids=[1, 2],
                         sub_base_url="https://sub.example.test/sub/", timeout=5)

    async def use_up(ref):
        state.use_up(ref)

    async def usable(ref):
        return state.client(ref).enable

    async def accounts():
        return len(state.clients)

    return Panel(backend, use_up, usable, accounts)


async def _outline(outline_server, **_) -> Panel:
    state, api_url, pin = outline_server
    state.keys.clear()
    state.transfer.clear()
    backend = OutlineBackend(api_url, pin, key_secret="limits-secret", timeout=5)

    async def use_up(ref):
        state.transfer[ref] = GB + 1  # the server drops a key once it is over its limit

    async def usable(ref):
        return ref in state.keys and state.transfer.get(ref, 0) <= GB

    async def accounts():
        return len(state.keys)

    async def lift(ref):
        state.transfer[ref] = GB // 2  # older traffic left the 30-day window

    return Panel(backend, use_up, usable, accounts, lift)


PANELS = {"sandbox": _sandbox, "outline": _outline, "marzban": _marzban,
          "remnawave": _remnawave, "xui": _xui}


@pytest.fixture(params=list(PANELS))
async def panel(request, db, faults) -> AsyncIterator[Panel]:
    name = request.param
    servers = {} if name == "sandbox" else {
        f"{name}_server": request.getfixturevalue(f"{name}_server")}
    built = await PANELS[name](db=db, faults=faults, **servers)
    yield built
    if getattr(built, "control", None) is not None:
        await built.control.aclose()
    await built.backend.close()


def paid(user_id: str, traffic_gb: int | None = 1) -> InvoicePaidV1:
    return InvoicePaidV1(
        invoice_id=uuid.uuid4().hex, user_id=user_id,
        plan=PlanSnapshot(plan_id="plan-m", name="Monthly", duration_days=30, max_devices=2,
                          price_usd=Decimal("9.99"), traffic_limit_gb=traffic_gb,
                          traffic_reset="MONTH" if traffic_gb else "NONE"),
        amount_usd=Decimal("9.99"), asset="USDT", network="TRON", amount_asset=Decimal("9.99"),
        amount_paid_asset=Decimal("9.99"), paid_at=NOW)


async def buy(db, service, event: InvoicePaidV1, at: datetime = NOW) -> str:
    async with db.transaction() as s:
        await service.record_paid(s, event, at)
    async with db.transaction() as s:
        return (await service.apply_grant(s, event.invoice_id, at)).outcome


async def limited_events(db) -> list[dict]:
    async with db.transaction() as s:
        rows = (await s.execute(sa.select(outbox.c.envelope)
                                .where(outbox.c.routing_key == LIMITED_KEY)
                                .order_by(outbox.c.id))).scalars().all()
    return [r["payload"] for r in rows]


async def own(service, db, user_id: str) -> dict:
    (sub,) = await service.list_own(db, Identity(user_id, "USER"))
    return sub


async def test_used_up_is_limited_once_and_the_renewal_makes_it_active(db, panel):
    service = ProvisioningService(panel.backend)
    user = f"lim-{panel.backend.name}"
    me = Identity(user, "USER")
    assert await buy(db, service, paid(user)) == "activated"
    sub = await own(service, db, user)
    async with db.transaction() as s:
        ref = (await s.get(Subscription, sub["id"])).provision_ref
        usage = await service.usage(s, me, sub["id"])
    assert usage["limit_bytes"] == GB and not usage["limited"]
    assert sub["status"] == "ACTIVE" and sub["limited_until"] is None
    assert await service.check_limits(db, NOW, 100) == 0

    await panel.use_up(ref)  # the panel counts the allowance used up
    assert not await panel.usable(ref)
    assert await service.check_limits(db, NOW + timedelta(minutes=5), 100) == 1
    sub = await own(service, db, user)
    assert sub["status"] == "LIMITED"
    # when the allowance renews, where the panel says (Outline's window rolls; the sandbox
    # has no calendar)
    if panel.backend.name in ("outline", "sandbox"):
        assert sub["limited_until"] is None
    else:
        assert sub["limited_until"] > NOW
    if panel.backend.name == "remnawave":
        assert sub["limited_until"] == next_month_start(datetime.now(UTC))
    (event,) = await limited_events(db)
    assert (event["subscription_id"], event["user_id"]) == (sub["id"], user)
    # seen again by the check and by the customer's own usage read: still one notice
    assert await service.check_limits(db, NOW + timedelta(minutes=10), 100) == 0
    async with db.transaction() as s:
        assert (await service.usage(s, me, sub["id"]))["limited"]
    assert len(await limited_events(db)) == 1

    assert await buy(db, service, paid(user)) == "extended"  # the renewal
    sub = await own(service, db, user)
    if panel.backend.grant_resets_traffic:
        assert await panel.usable(ref) and sub["status"] == "ACTIVE"
        assert sub["limited_until"] is None
        async with db.transaction() as s:
            usage = await service.usage(s, me, sub["id"])
        assert not usage["limited"] and not usage["used_bytes"]
    else:  # Outline: the 30-day window still holds the traffic
        assert sub["status"] == "LIMITED"
        assert await service.check_limits(db, NOW + timedelta(minutes=15), 100) == 0
        await panel.lift(ref)
        await service.check_limits(db, NOW + timedelta(minutes=20), 100)
        assert (await own(service, db, user))["status"] == "ACTIVE"
    assert await service.check_limits(db, NOW + timedelta(minutes=30), 100) == 0
    assert len(await limited_events(db)) == 1 and await panel.accounts() == 1


async def test_a_second_limit_period_is_told_again(db, faults):
    """The mark goes when the panel lifts the limit (its monthly reset), so the next period's
    limit is one new notice."""
    backend = SandboxBackend(db, host="vpn.sandbox.test", port=8388, faults=faults)
    service = ProvisioningService(backend)
    await buy(db, service, paid("lim-period"))
    sub = await own(service, db, "lim-period")
    async with db.transaction() as s:
        ref = (await s.get(Subscription, sub["id"])).provision_ref
    await backend.set_used(ref, GB)
    assert await service.check_limits(db, NOW, 100) == 1
    await backend.set_used(ref, 0)  # the panel's monthly reset
    assert await service.check_limits(db, NOW + timedelta(minutes=1), 100) == 0
    assert (await own(service, db, "lim-period"))["status"] == "ACTIVE"
    await backend.set_used(ref, GB)
    assert await service.check_limits(db, NOW + timedelta(minutes=2), 100) == 1
    assert len(await limited_events(db)) == 2


async def test_a_suspended_or_unlimited_subscription_is_never_limited(db, faults):
    backend = SandboxBackend(db, host="vpn.sandbox.test", port=8388, faults=faults)
    service = ProvisioningService(backend)
    await buy(db, service, paid("lim-free", traffic_gb=None))
    await buy(db, service, paid("lim-susp"))
    susp = await own(service, db, "lim-susp")
    async with db.transaction() as s:
        await service.admin_suspend(s, susp["id"], NOW)
        ref = (await s.get(Subscription, susp["id"])).provision_ref
    await backend.set_used(ref, GB)
    assert await service.check_limits(db, NOW, 100) == 0
    assert await limited_events(db) == []
    assert (await own(service, db, "lim-susp"))["status"] == "SUSPENDED"


# ---------------------------------------------------------------- through the API


@pytest.fixture
async def api(unit_settings, db, remnawave_server) -> AsyncIterator[tuple]:
    """The provisioner API (over ASGI) on the Remnawave fake, its webhook secret set."""
    fake, url = remnawave_server
    fake.reset()
    secret = "w" * 64
    settings = unit_settings.model_copy(update={
        "vpn_backend": "remnawave", "remnawave_base_url": url, "remnawave_api_token": RW_TOKEN,
        "remnawave_squads": [RW_SQUAD], "remnawave_webhook_secret": secret})
    app = create_api(settings)
    relayed = identity.sign(settings.internal_signing_key, "remnawave", "SERVICE",
                            audience="provisioner")
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://prov",
            headers={identity.HEADER: relayed}) as client:
        yield client, app.state.service, secret


def delivery(ref: str, secret: str, event: str = "user.limited") -> tuple[bytes, dict]:
    raw = json.dumps({"scope": "user", "event": event, "timestamp": NOW.isoformat(),
                      "data": {"username": ref, "status": "LIMITED"}, "meta": None},
                     separators=(",", ":")).encode()
    return raw, {"X-Remnawave-Signature": hmac.new(secret.encode(), raw,
                                                   hashlib.sha256).hexdigest(),
                 "Content-Type": "application/json"}


async def test_the_remnawave_webhook_marks_limited_once_and_a_forgery_changes_nothing(db, api):
    client, service, secret = api
    await buy(db, service, paid("lim-hook"))
    sub = await own(service, db, "lim-hook")
    async with db.transaction() as s:
        ref = (await s.get(Subscription, sub["id"])).provision_ref
    raw, headers = delivery(ref, secret)
    forged = {**headers, "X-Remnawave-Signature": hmac.new(b"x" * 64, raw,
                                                           hashlib.sha256).hexdigest()}
    for bad in (forged, {"Content-Type": "application/json"}):
        r = await client.post("/internal/webhooks/remnawave", content=raw, headers=bad)
        assert r.status_code == 401 and r.json()["code"] == "UNAUTHENTICATED"
    tampered = raw.replace(b'"user.limited"', b'"user.limited" ')
    r = await client.post("/internal/webhooks/remnawave", content=tampered, headers=headers)
    assert r.status_code == 401
    assert (await own(service, db, "lim-hook"))["status"] == "ACTIVE"
    assert await limited_events(db) == []

    for _ in range(3):  # the panel's retries, a redelivery
        r = await client.post("/internal/webhooks/remnawave", content=raw, headers=headers)
        assert r.status_code == 200 and r.json() == {"ok": True}
    sub = await own(service, db, "lim-hook")
    assert sub["status"] == "LIMITED"
    assert sub["limited_until"] == next_month_start(datetime.now(UTC))
    assert len(await limited_events(db)) == 1
    # someone else's user, another event: acknowledged, nothing changes
    for other in (delivery("alice", secret), delivery(ref, secret, "user.modified")):
        r = await client.post("/internal/webhooks/remnawave", content=other[0],
                              headers=other[1])
        assert r.status_code == 200
    assert len(await limited_events(db)) == 1
    r = await client.get("/internal/backend")
    assert r.json() == {"backend": "remnawave", "enforces_devices": True,
                        "enforces_traffic": True}


async def test_the_sandbox_control_endpoint_sets_used_traffic(unit_settings, db):
    settings = unit_settings.model_copy(update={"jobs_prefix": f"t-{uuid.uuid4().hex[:8]}"})
    app = create_api(settings)
    admin = identity.sign(settings.internal_signing_key, "admin-1", "ADMIN",
                          audience="provisioner")
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://prov",
            headers={identity.HEADER: admin}) as client:
        service = app.state.service
        await buy(db, service, paid("lim-sbx"))
        sub = await own(service, db, "lim-sbx")
        r = await client.post(f"/internal/sandbox/subscriptions/{sub['id']}/traffic",
                              json={"used_bytes": GB})
        assert r.status_code == 200, r.text
        assert r.json()["limited"] and r.json()["used_bytes"] == GB
        assert (await client.post("/internal/sandbox/subscriptions/nope/traffic",
                                  json={"used_bytes": 1})).status_code == 404
        assert (await client.post(f"/internal/sandbox/subscriptions/{sub['id']}/traffic",
                                  json={"used_bytes": -1})).status_code == 400
        r = await client.get("/internal/backend")
        assert r.json() == {"backend": "sandbox", "enforces_devices": True,
                            "enforces_traffic": True}
