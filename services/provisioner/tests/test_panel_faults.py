"""Fault row "panel down" for the Remnawave and 3x-ui backends, through the provisioner's
`provision` job handler (real Postgres, each panel's fake over real HTTP): while the panel
fails, a paid grant's attempts fail and are recorded, no account is made and the grant stays
PENDING (the subscription is not lost); once the panel is back the next attempt makes exactly
one account and an ACTIVE subscription. And reconciliation repairing drift made on a Remnawave
panel by hand (3x-ui's: test_xui_service.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

import httpx
import pytest
import sqlalchemy as sa

from contracts.billing import InvoicePaidV1, PlanSnapshot
from fakes.remnawave import RemnawaveFake
from fakes.remnawave import create_app as remnawave_app
from fakes.xui import create_app as xui_app
from provisioner.backends.remnawave import RemnawaveBackend
from provisioner.backends.xui import XuiBackend
from provisioner.jobs import provision_handlers
from provisioner.models import Grant, Subscription
from provisioner.service import ProvisioningService
from runtime.testing import serve_in_thread

NOW = datetime.now(UTC).replace(microsecond=0)
TOKEN = "rw-api-token-faults"
SQUAD = "5a1f2b3c-0000-4000-8000-00000000cc01"


@pytest.fixture(scope="module")
def remnawave_panel():
    fake = RemnawaveFake(token=TOKEN, squads={SQUAD: "Default-Squad"})
    with serve_in_thread(remnawave_app(fake), lifespan="off") as url:
        yield fake, url


@pytest.fixture(scope="module")
def xui_panel():
    app = xui_app(username="admin", password="pw", base_path="/xui/")
    with serve_in_thread(app, lifespan="off") as url:
        yield app.state.xui, url + "/xui/"


class Remnawave:
    def __init__(self, panel):
        self.fake, url = panel
        self.fake.reset()
        self.backend = RemnawaveBackend(url, TOKEN, squads=[SQUAD], timeout=5)
        self.control = httpx.AsyncClient(base_url=f"{url}/_fake", timeout=5)

    async def down(self):
        r = await self.control.post("/faults", json={"op": "*", "status": 500, "times": None})
        assert r.status_code < 300, r.text

    async def up(self):
        await self.control.delete("/faults")

    async def accounts(self) -> dict[str, str]:
        users = (await self.control.get("/users")).json()["users"]
        return {u["username"]: u["status"] for u in users}

    async def close(self):
        await self.control.aclose()
        await self.backend.close()


class Xui:
    def __init__(self, panel):
        self.state, url = panel
        self.state.reset()
        self.backend = XuiBackend(url, "admin", "pw", inbound_ids=[1],
                                  sub_base_url="https://sub.example.test/sub/", timeout=5)

    async def down(self):  # 3x-ui's error channel: HTTP 200 with success false
        self.state.inject_failures(10_000, status=200, msg="Something went wrong (panel down)")

    async def up(self):
        self.state.inject_failures(0)

    async def accounts(self) -> dict[str, str]:
        return {c.email: "ACTIVE" if c.enable else "DISABLED"
                for c in self.state.clients.values()}

    async def close(self):
        await self.backend.close()


@pytest.fixture(params=["remnawave", "xui"])
async def panel(request):
    built = (Remnawave(request.getfixturevalue("remnawave_panel")) if request.param == "remnawave"
             else Xui(request.getfixturevalue("xui_panel")))
    yield built
    await built.close()


def paid(user_id: str) -> InvoicePaidV1:
    return InvoicePaidV1(
        invoice_id=uuid.uuid4().hex, user_id=user_id,
        plan=PlanSnapshot(plan_id="plan-m", name="Monthly", duration_days=30, max_devices=2,
                          price_usd=Decimal("9.99"), traffic_limit_gb=10, traffic_reset="MONTH"),
        amount_usd=Decimal("9.99"), asset="USDT", network="TRON", amount_asset=Decimal("9.99"),
        amount_paid_asset=Decimal("9.99"), paid_at=NOW)


def job(invoice_id: str, attempts_made: int) -> SimpleNamespace:
    return SimpleNamespace(data={"invoice_id": invoice_id}, attemptsMade=attempts_made,
                           opts={"attempts": 8})


async def test_a_grant_while_the_panel_is_down_retries_and_makes_one_account(db, panel):
    service = ProvisioningService(panel.backend)
    apply_grant = provision_handlers(db, service)["apply_grant"]
    event = paid(f"down-{panel.backend.name}")
    async with db.transaction() as s:
        await service.record_paid(s, event, NOW)

    await panel.down()
    for attempt in range(2):  # the job's retries while the panel is down
        with pytest.raises(Exception) as info:
            await apply_grant(job(event.invoice_id, attempt))
        assert panel.backend.name in str(info.value)
    async with db.transaction() as s:
        grant = (await s.execute(sa.select(Grant).where(
            Grant.invoice_id == event.invoice_id))).scalar_one()
        subs = (await s.execute(sa.select(Subscription).where(
            Subscription.user_id == event.user_id))).scalars().all()
    assert grant.status == "PENDING" and grant.attempts == 2 and grant.last_error
    assert subs == [] and await panel.accounts() == {}

    await panel.up()
    assert await apply_grant(job(event.invoice_id, 2)) == "activated"
    assert await apply_grant(job(event.invoice_id, 3)) == "duplicate"  # a late redelivery
    async with db.transaction() as s:
        grant = (await s.execute(sa.select(Grant).where(
            Grant.invoice_id == event.invoice_id))).scalar_one()
        sub = (await s.execute(sa.select(Subscription).where(
            Subscription.user_id == event.user_id))).scalar_one()
    assert grant.status == "APPLIED" and sub.status == "ACTIVE"
    assert await panel.accounts() == {sub.provision_ref: "ACTIVE"}


async def test_reconciliation_repairs_drift_on_remnawave_and_leaves_a_limited_user_alone(
        db, remnawave_panel):
    panel = Remnawave(remnawave_panel)
    try:
        service = ProvisioningService(panel.backend)
        apply_grant = provision_handlers(db, service)["apply_grant"]
        subs = {}
        for user in ("rc-off", "rc-gone", "rc-ended", "rc-limited"):
            event = paid(user)
            async with db.transaction() as s:
                await service.record_paid(s, event, NOW)
            assert await apply_grant(job(event.invoice_id, 0)) == "activated"
            async with db.transaction() as s:
                subs[user] = (await s.execute(sa.select(Subscription).where(
                    Subscription.user_id == user))).scalar_one()
        ids = {u["username"]: u["id"] for u in (await panel.control.get("/users")).json()["users"]}
        # by hand on the panel: one switched off, one deleted; meanwhile one subscription ended
        await panel.backend._call("t", "POST", f"/api/users/{ids[subs['rc-off'].provision_ref]}"
                                  "/actions/disable")
        await panel.backend._call("t", "DELETE", f"/api/users/{ids[subs['rc-gone'].provision_ref]}")
        async with db.transaction() as s:
            await s.execute(sa.update(Subscription).where(Subscription.id == subs["rc-ended"].id)
                            .values(status="EXPIRED"))
        await panel.backend.ensure_active("vpn_orphan_rw", expires_at=NOW + timedelta(days=1),
                                          max_devices=1)
        limited = subs["rc-limited"].provision_ref
        await panel.control.post(f"/users/{limited}/limited")  # the panel enforcing the plan
        fixes = await service.reconcile(db, NOW)
        assert fixes == {"enabled": 1, "recreated": 1, "disabled": 1, "orphan_disabled": 1}
        found = await panel.accounts()
        assert found[subs["rc-off"].provision_ref] == "ACTIVE"
        assert found[subs["rc-gone"].provision_ref] == "ACTIVE"
        assert found[subs["rc-ended"].provision_ref] == "DISABLED"
        assert found["vpn_orphan_rw"] == "DISABLED"
        assert found[limited] == "LIMITED"  # no traffic reset behind the customer's plan
        assert len(found) == 5 and await service.reconcile(db, NOW) == {}
    finally:
        await panel.close()
