"""Auto-renewal and reminders against a real database: a renewal is charged once per period
from the balance (also when the same period is asked several times at once, and when the message
is delivered again), a short balance gets one open RENEWAL invoice and its pay link, and a
reminder reaches the customer only when auto-renewal will not pay."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from billing.consumers import build_provisioning_subscription
from billing.schemas import PlanCreate
from billing.service import ledger, plan_service
from contracts import make_envelope
from contracts.provisioning import SubscriptionExpiringV1, SubscriptionRenewalDueV1

D = Decimal


def user() -> str:
    return f"u-{uuid.uuid4().hex[:12]}"


async def new_plan(db, price: str = "5.00", active: bool = True) -> str:
    async with db.transaction() as s:
        plan = await plan_service.create(s, PlanCreate(
            name=f"plan-{uuid.uuid4().hex[:10]}", price_usd=price, duration_days=30,
            max_devices=2, is_active=active))
        return plan.id


async def top_up(db, user_id: str, amount: str) -> None:
    async with db.transaction() as s:
        await ledger.move(s, user_id=user_id, amount=D(amount), kind="TOP_UP",
                          key=uuid.uuid4().hex)


def due(user_id: str, plan_id: str, sub_id: str | None = None,
        expires_at: datetime | None = None) -> SubscriptionRenewalDueV1:
    return SubscriptionRenewalDueV1(
        subscription_id=sub_id or uuid.uuid4().hex, user_id=user_id, plan_id=plan_id,
        expires_at=expires_at or datetime.now(UTC) + timedelta(hours=20))


async def outbox(pg, routing_key: str, user_id: str) -> list[dict]:
    rows = await pg.fetch("SELECT envelope FROM billing.outbox WHERE routing_key = $1 AND "
                          "envelope->'payload'->>'user_id' = $2 ORDER BY id",
                          routing_key, user_id)
    return [json.loads(r["envelope"])["payload"] for r in rows]


async def renewals(pg, user_id: str) -> list[dict]:
    return [dict(r) for r in await pg.fetch(
        "SELECT id, status, provider, amount_usd, renewal_key, subscription_id FROM "
        "billing.invoices WHERE user_id = $1 AND kind = 'RENEWAL'", user_id)]


async def test_a_covered_renewal_is_charged_once_even_when_asked_at_once(sandbox, db, pg):
    u, plan = user(), await new_plan(db, "5.00")
    await top_up(db, u, "12.00")
    event = due(u, plan)
    outcomes = await asyncio.gather(*(sandbox.renewals.renew(db, event) for _ in range(6)))
    assert sorted(outcomes) == ["charged"] + ["duplicate"] * 5
    [invoice] = await renewals(pg, u)
    assert (invoice["status"], invoice["provider"], invoice["amount_usd"]) == (
        "PAID", "balance", D("5.00"))
    assert invoice["subscription_id"] == event.subscription_id
    async with db.transaction() as s:
        assert await ledger.balance(s, u) == D("7.00")
    [paid] = await outbox(pg, "billing.invoice.paid.v1", u)
    assert (paid["kind"], paid["subscription_id"], paid["plan"]["plan_id"]) == (
        "RENEWAL", event.subscription_id, plan)
    # Delivered again later: nothing more.
    assert await sandbox.renewals.renew(db, event) == "duplicate"
    assert len(await outbox(pg, "billing.invoice.paid.v1", u)) == 1


async def test_each_period_is_charged_once(sandbox, db, pg):
    u, plan = user(), await new_plan(db, "5.00")
    await top_up(db, u, "20.00")
    first = due(u, plan)
    second = due(u, plan, first.subscription_id, first.expires_at + timedelta(days=30))
    for event in (first, second, first, second):
        await sandbox.renewals.renew(db, event)
    assert len(await renewals(pg, u)) == 2
    async with db.transaction() as s:
        assert await ledger.balance(s, u) == D("10.00")


async def test_a_short_balance_gets_one_renewal_invoice_and_its_pay_link(sandbox, db, pg):
    u, plan = user(), await new_plan(db, "5.00")
    await top_up(db, u, "2.00")
    event = due(u, plan)
    outcomes = await asyncio.gather(*(sandbox.renewals.renew(db, event) for _ in range(3)))
    assert sorted(outcomes) == ["duplicate", "duplicate", "invoiced"]
    [invoice] = await renewals(pg, u)
    assert (invoice["status"], invoice["provider"]) == ("CREATED", "sandbox")
    async with db.transaction() as s:
        assert await ledger.balance(s, u) == D("2.00")  # nothing taken
    [reminder] = await outbox(pg, "billing.renewal.reminder.v1", u)
    assert reminder["invoice_id"] == invoice["id"]
    assert reminder["pay_url"].endswith(f"/app/invoices/{invoice['id']}")
    assert (reminder["auto_renew"], reminder["balance_usd"], reminder["price_usd"]) == (
        True, "2.00", "5.00")
    assert await outbox(pg, "billing.invoice.paid.v1", u) == []


async def test_a_plan_no_longer_on_sale_charges_nothing(sandbox, db, pg):
    u, plan = user(), await new_plan(db, "5.00", active=False)
    await top_up(db, u, "20.00")
    assert await sandbox.renewals.renew(db, due(u, plan)) == "plan_unavailable"
    assert await renewals(pg, u) == []


async def test_a_redelivered_renewal_message_charges_once(sandbox, db, pg):
    u, plan = user(), await new_plan(db, "5.00")
    await top_up(db, u, "5.00")
    handle = build_provisioning_subscription(db, sandbox.renewals).handlers[
        SubscriptionRenewalDueV1.routing_key()]
    event = due(u, plan)
    env = make_envelope(event, producer="provisioner")
    await handle(env, event)
    await handle(env, event)  # the same message again
    await handle(make_envelope(event, producer="provisioner"), event)  # a second publish
    assert [r["status"] for r in await renewals(pg, u)] == ["PAID"]
    async with db.transaction() as s:
        assert await ledger.balance(s, u) == D("0.00")


def expiring(user_id: str, plan_id: str | None, auto_renew: bool, days_left: int = 3
             ) -> SubscriptionExpiringV1:
    return SubscriptionExpiringV1(
        subscription_id=uuid.uuid4().hex, user_id=user_id,
        expires_at=datetime.now(UTC) + timedelta(days=days_left), days_left=days_left,
        plan_id=plan_id, auto_renew=auto_renew)


async def remind(db, sandbox, event: SubscriptionExpiringV1) -> None:
    handle = build_provisioning_subscription(db, sandbox.renewals).handlers[
        SubscriptionExpiringV1.routing_key()]
    env = make_envelope(event, producer="provisioner")
    await handle(env, event)
    await handle(env, event)  # a redelivery reminds nobody twice


async def test_no_reminder_when_auto_renewal_will_pay(sandbox, db, pg):
    u, plan = user(), await new_plan(db, "5.00")
    await top_up(db, u, "5.00")
    await remind(db, sandbox, expiring(u, plan, auto_renew=True))
    assert await outbox(pg, "billing.renewal.reminder.v1", u) == []


async def test_a_reminder_when_auto_renewal_is_off_or_the_balance_is_short(sandbox, db, pg):
    u, plan = user(), await new_plan(db, "5.00")
    await top_up(db, u, "4.99")
    await remind(db, sandbox, expiring(u, plan, auto_renew=True, days_left=7))
    await remind(db, sandbox, expiring(u, plan, auto_renew=False, days_left=3))
    await remind(db, sandbox, expiring(u, None, auto_renew=False, days_left=1))  # after a trial
    sent = await outbox(pg, "billing.renewal.reminder.v1", u)
    assert [(r["days_left"], r["auto_renew"], r["plan_id"]) for r in sent] == [
        (7, True, plan), (3, False, plan), (1, False, None)]
    assert sent[0]["pay_url"].endswith(f"/app/buy/{plan}")
    assert sent[2]["pay_url"].endswith("/app/buy")
    assert sent[0]["balance_usd"] == "4.99"


async def test_the_cover_the_panel_shows(sandbox, db):
    u, plan = user(), await new_plan(db, "5.00")
    async with db.transaction() as s:
        short = await sandbox.renewals.cover(s, u, plan)
    await top_up(db, u, "5.00")
    async with db.transaction() as s:
        enough = await sandbox.renewals.cover(s, u, plan)
        unknown = await sandbox.renewals.cover(s, u, "no-such-plan")
    assert (short.covered, enough.covered, unknown.covered) == (False, True, False)
    assert unknown.price_usd is None
