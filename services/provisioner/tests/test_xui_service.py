"""The provisioning service on the 3x-ui backend (the fake panel over real HTTP): a paid grant
makes the client, the customer's access is its subscription link, a refund and the expiry sweep
switch it off."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from contracts.billing import InvoicePaidV1, InvoiceRefundedV1, PlanSnapshot
from fakes.xui import create_app
from provisioner.backends.xui import XuiBackend
from provisioner.models import Subscription
from provisioner.service import ProvisioningService
from runtime.identity import Identity
from runtime.testing import serve_in_thread

NOW = datetime.now(UTC).replace(microsecond=0)
DAY = timedelta(days=1)
SUB = "https://sub.example.test/sub/"


@pytest.fixture(scope="module")
def panel():
    app = create_app(username="admin", password="pw", base_path="/xui/")
    with serve_in_thread(app, lifespan="off") as url:
        yield app.state.xui, url + "/xui/"


@pytest.fixture
async def service(panel):
    state, url = panel
    state.reset()
    backend = XuiBackend(url, "admin", "pw", inbound_ids=[1, 2], sub_base_url=SUB, timeout=5)
    yield ProvisioningService(backend)
    await backend.close()


def paid(user_id: str, days: int = 30, devices: int = 3) -> InvoicePaidV1:
    return InvoicePaidV1(
        invoice_id=uuid.uuid4().hex, user_id=user_id,
        plan=PlanSnapshot(plan_id="plan-m", name="Monthly", duration_days=days,
                          max_devices=devices, price_usd=Decimal("9.99")),
        amount_usd=Decimal("9.99"), asset="USDT", network="TRON", amount_asset=Decimal("9.99"),
        amount_paid_asset=Decimal("9.99"), paid_at=NOW)


async def buy(db, service, event: InvoicePaidV1, at: datetime) -> str:
    async with db.transaction() as s:
        await service.record_paid(s, event, at)
    async with db.transaction() as s:
        return (await service.apply_grant(s, event.invoice_id, at)).outcome


async def subscription(db, user_id: str) -> Subscription:
    async with db.transaction() as s:
        return (await s.execute(sa.select(Subscription)
                                .where(Subscription.user_id == user_id))).scalar_one()


async def test_grant_access_refund_on_3x_ui(db, service, panel):
    state, _ = panel
    event = paid("x-u1", devices=2)
    assert await buy(db, service, event, NOW) == "activated"
    sub = await subscription(db, "x-u1")
    client = state.client(sub.provision_ref)
    assert client.enable and client.inbound_ids == [1, 2]
    assert client.record()["expiryTime"] == int((NOW + 30 * DAY).timestamp()) * 1000
    assert client.record()["limitIp"] == 2
    async with db.transaction() as s:
        out = await service.access(s, Identity("x-u1", "USER"), sub.id)
    assert out["backend"] == "xui" and out["access_url"] == SUB + client.sub_id
    async with db.transaction() as s:
        await service.record_refund(s, InvoiceRefundedV1(
            invoice_id=event.invoice_id, user_id="x-u1", plan=event.plan, reason="asked",
            refunded_at=NOW), NOW + DAY)
    async with db.transaction() as s:
        assert await service.apply_refund(s, event.invoice_id, NOW + DAY) == "revoked"
    assert not state.client(sub.provision_ref).enable
    assert len(state.clients) == 1


async def test_the_expiry_sweep_switches_the_client_off(db, service, panel):
    state, _ = panel
    await buy(db, service, paid("x-u2", days=2), NOW)
    sub = await subscription(db, "x-u2")
    assert state.client(sub.provision_ref).enable
    assert await service.expiry_sweep(db, NOW + 3 * DAY, 100) == 1
    assert (await subscription(db, "x-u2")).status == "EXPIRED"
    assert not state.client(sub.provision_ref).enable


async def test_reconciliation_repairs_drift_on_3x_ui_and_leaves_a_used_up_client_alone(
        db, service, panel):
    state, _ = panel
    for user in ("x-r1", "x-r2", "x-r3", "x-r4"):
        await buy(db, service, paid(user), NOW)
    off, gone, ended, limited = [await subscription(db, u)
                                 for u in ("x-r1", "x-r2", "x-r3", "x-r4")]
    with state.lock:  # drift made on the panel by hand, and a subscription ended meanwhile
        state.client(off.provision_ref).fields["enable"] = False
        state.clients.pop(gone.provision_ref.lower())
    async with db.transaction() as s:
        await s.execute(sa.update(Subscription).where(Subscription.id == ended.id)
                        .values(status="EXPIRED"))
    await service.backend.ensure_active("vpn_orphan_x", expires_at=NOW + DAY, max_devices=1)
    state.clients[limited.provision_ref.lower()].fields["totalGB"] = 100
    state.use_up(limited.provision_ref)  # the panel enforcing the allowance: not drift
    fixes = await service.reconcile(db, NOW)
    assert fixes == {"enabled": 1, "recreated": 1, "disabled": 1, "orphan_disabled": 1}
    assert state.client(off.provision_ref).enable and state.client(gone.provision_ref).enable
    assert not state.client(ended.provision_ref).enable
    assert not state.client("vpn_orphan_x").enable
    used_up = state.client(limited.provision_ref)
    assert not used_up.enable and used_up.up + used_up.down == 100  # no traffic reset
    assert await service.reconcile(db, NOW) == {}
