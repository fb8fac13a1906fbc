"""State machines, the settle step and idempotent creation, against a real database.

The sandbox chain is driven directly (transfers, blocks) and `PaymentWatcher.watch_one` /
`payment_watch` are called the way the scheduled job calls them; time is moved by passing `now`.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest

from billing import retention, watch
from billing.exceptions import IdempotencyInProgress, IdempotencyKeyReused
from billing.models import Invoice, Payment
from billing.providers.sandbox import sandbox_chain
from billing.repository import InvoiceRepository, PlanRepository
from billing.schemas import InvoiceCreate, PlanCreate, PlanUpdate
from billing.service import (
    INVOICE_TRANSITIONS_ALLOWED,
    PAYMENT_TRANSITIONS_ALLOWED,
    invoice_fingerprint,
    ledger,
    plan_service,
    transition_invoice,
    transition_payment,
    utcnow,
)
from runtime.errors import IllegalTransition, ServiceUnavailable, ValidationFailed
from runtime.retention import run_rules

from .conftest import make_settings


async def new_plan(db, price: str = "10.00") -> str:
    async with db.transaction() as s:
        plan = await plan_service.create(s, PlanCreate(
            name=f"plan-{uuid.uuid4().hex[:10]}", price_usd=price, duration_days=30,
            max_devices=2))
        return plan.id


async def new_invoice(parts, db, plan_id: str, user: str = "user-1", asset: str = "USDT",
                      network: str = "TRON") -> dict:
    result = await parts.billing.create_invoice_idempotent(
        db, user_id=user, key=uuid.uuid4().hex,
        body=InvoiceCreate(plan_id=plan_id, asset=asset, network=network))
    assert result.status == 201 and not result.replayed
    return result.json()["invoice"]


async def pay(db, invoice: dict, amount: Decimal, blocks: int = 0) -> None:
    async with db.transaction() as s:
        await sandbox_chain.transfer(s, address=invoice["address"], amount_asset=amount,
                                     asset=invoice["asset"], network=invoice["network"])
    if blocks:
        await mine(db, blocks)


async def mine(db, count: int) -> None:
    async with db.transaction() as s:
        await sandbox_chain.mine(s, count)


async def load(db, invoice_id: str) -> tuple[Invoice, list[Payment]]:
    async with db.transaction() as s:
        repo = InvoiceRepository(s)
        return await repo.get(invoice_id), await repo.payments(invoice_id)


async def events(pg, routing_key: str, invoice_id: str) -> list[dict]:
    rows = await pg.fetch(
        "SELECT envelope FROM billing.outbox WHERE routing_key = $1 "
        "AND envelope->'payload'->>'invoice_id' = $2 ORDER BY id", routing_key, invoice_id)
    return [json.loads(r["envelope"])["payload"] for r in rows]


def test_invoice_transitions_follow_the_state_machine():
    now = utcnow()
    statuses = list(INVOICE_TRANSITIONS_ALLOWED)
    for start, allowed in INVOICE_TRANSITIONS_ALLOWED.items():
        for target in statuses:
            invoice = Invoice(status=start)
            if target in allowed:
                transition_invoice(invoice, target, now)
                assert invoice.status == target
            else:
                with pytest.raises(IllegalTransition) as refused:
                    transition_invoice(invoice, target, now)
                assert refused.value.status == 409
                assert invoice.status == start
    # A crypto invoice is detected first (PENDING); one paid from the balance is PAID at once.
    assert INVOICE_TRANSITIONS_ALLOWED["CREATED"] == {"PENDING", "PAID", "EXPIRED", "CANCELED"}
    assert INVOICE_TRANSITIONS_ALLOWED["PAID"] == {"REFUNDED"}
    assert not INVOICE_TRANSITIONS_ALLOWED["EXPIRED"]


def test_payment_transitions_follow_the_state_machine():
    now = utcnow()
    for start, allowed in PAYMENT_TRANSITIONS_ALLOWED.items():
        for target in PAYMENT_TRANSITIONS_ALLOWED:
            payment = Payment(status=start)
            if target in allowed:
                transition_payment(payment, target, now)
                assert payment.status == target
            else:
                with pytest.raises(IllegalTransition):
                    transition_payment(payment, target, now)
                assert payment.status == start
    payment = Payment(status="DETECTED")
    with pytest.raises(IllegalTransition):
        transition_payment(payment, "SETTLED", now)  # confirmations first


async def test_payment_confirms_then_invoice_paid_exactly_once(sandbox, db, pg):
    plan_id = await new_plan(db)
    inv = await new_invoice(sandbox, db, plan_id)
    assert inv["status"] == "CREATED" and inv["amount_asset"] == "10.00000000"
    assert inv["address"].startswith("T") and inv["payment_url"] is None
    await pay(db, inv, Decimal(inv["amount_asset"]))
    assert await sandbox.watcher.watch_one(inv["id"]) == "PENDING"
    invoice, payments = await load(db, inv["id"])
    assert [(p.status, p.confirmations) for p in payments] == [("DETECTED", 0)]
    await mine(db, 1)
    assert await sandbox.watcher.watch_one(inv["id"]) == "PENDING"
    await mine(db, 1)
    # webhook and poller racing on the same invoice: the row lock makes one of them apply it
    results = await asyncio.gather(*(sandbox.watcher.watch_one(inv["id"]) for _ in range(5)))
    assert set(results) == {"PAID"}
    invoice, payments = await load(db, inv["id"])
    assert invoice.paid_at is not None and invoice.amount_received_asset == Decimal("10")
    assert [(p.status, p.confirmations) for p in payments] == [("SETTLED", 2)]
    assert payments[0].detected_at <= payments[0].confirmed_at <= payments[0].settled_at
    paid = await events(pg, "billing.invoice.paid.v1", inv["id"])
    assert len(paid) == 1
    assert paid[0]["plan"]["plan_id"] == plan_id and paid[0]["plan"]["duration_days"] == 30
    assert paid[0]["plan"]["max_devices"] == 2 and paid[0]["plan"]["price_usd"] == "10.00"
    assert len(await events(pg, "billing.payment.detected.v1", inv["id"])) == 1
    assert len(await events(pg, "billing.invoice.created.v1", inv["id"])) == 1

    async with db.transaction() as s:
        invoice = await sandbox.billing.get_visible(s, "user-1", inv["id"], for_update=True)
        with pytest.raises(IllegalTransition) as refused:
            await sandbox.billing.cancel(s, invoice)
    assert refused.value.status == 409
    assert (await load(db, inv["id"]))[0].status == "PAID"

    async with db.transaction() as s:
        invoice = await sandbox.billing.get_visible(s, None, inv["id"], for_update=True)
        await sandbox.billing.refund(s, invoice, reason="customer asked", actor_id="admin-1")
    invoice, payments = await load(db, inv["id"])
    assert invoice.status == "REFUNDED" and invoice.refund_reason == "customer asked"
    assert [p.status for p in payments] == ["REFUNDED"]
    refunded = await events(pg, "billing.invoice.refunded.v1", inv["id"])
    assert len(refunded) == 1 and refunded[0]["plan"]["plan_id"] == plan_id
    async with db.transaction() as s:
        invoice = await sandbox.billing.get_visible(s, None, inv["id"], for_update=True)
        with pytest.raises(IllegalTransition):
            await sandbox.billing.refund(s, invoice, reason="again", actor_id="admin-1")


async def test_another_users_invoice_is_not_found(sandbox, db):
    inv = await new_invoice(sandbox, db, await new_plan(db))
    async with db.transaction() as s:
        with pytest.raises(Exception) as missing:
            await sandbox.billing.get_visible(s, "someone-else", inv["id"])
    assert getattr(missing.value, "status", None) == 404


async def test_under_payment_expires_with_the_partial_amount_recorded(sandbox, db, pg):
    inv = await new_invoice(sandbox, db, await new_plan(db))
    await pay(db, inv, Decimal("4.5"), blocks=2)
    assert await sandbox.watcher.watch_one(inv["id"]) == "PENDING"
    invoice, _ = await load(db, inv["id"])
    assert invoice.amount_received_asset == Decimal("4.5")
    later = invoice.rate_locked_until + timedelta(seconds=1)
    assert await sandbox.watcher.watch_one(inv["id"], now=later) == "EXPIRED"
    invoice, payments = await load(db, inv["id"])
    assert invoice.amount_received_asset == Decimal("4.5")
    assert invoice.underpaid_asset == Decimal("5.5")
    assert invoice.paid_at is None and invoice.expired_at == later
    assert [p.status for p in payments] == ["SETTLED"]
    expired = await events(pg, "billing.invoice.expired.v1", inv["id"])
    assert [e["amount_received_asset"] for e in expired] == ["4.50000000"]
    assert await events(pg, "billing.invoice.paid.v1", inv["id"]) == []


async def test_over_payment_is_paid_with_the_excess_recorded(sandbox, db, pg):
    inv = await new_invoice(sandbox, db, await new_plan(db, "20.00"), asset="BTC",
                            network="BITCOIN")
    assert inv["amount_asset"] == "0.00033334"  # 20 USD at 60000 USD/BTC, rounded up
    await pay(db, inv, Decimal("0.0005"), blocks=2)
    assert await sandbox.watcher.watch_one(inv["id"]) == "PAID"
    invoice, _ = await load(db, inv["id"])
    assert invoice.overpaid_asset == Decimal("0.00016666")
    paid = await events(pg, "billing.invoice.paid.v1", inv["id"])
    assert [p["amount_paid_asset"] for p in paid] == ["0.00050000"]


async def test_two_partial_payments_add_up_to_paid(sandbox, db):
    inv = await new_invoice(sandbox, db, await new_plan(db))
    await pay(db, inv, Decimal("6"), blocks=2)
    assert await sandbox.watcher.watch_one(inv["id"]) == "PENDING"
    await pay(db, inv, Decimal("4"), blocks=2)
    assert await sandbox.watcher.watch_one(inv["id"]) == "PAID"
    invoice, payments = await load(db, inv["id"])
    assert invoice.overpaid_asset == 0 and len(payments) == 2


async def test_late_payment_after_expiry_is_recorded_and_flagged(sandbox, db, pg):
    inv = await new_invoice(sandbox, db, await new_plan(db))
    invoice, _ = await load(db, inv["id"])
    later = invoice.rate_locked_until + timedelta(seconds=1)
    assert await sandbox.watcher.watch_one(inv["id"], now=later) == "EXPIRED"
    await pay(db, inv, Decimal("10"), blocks=2)
    outcome = await sandbox.watcher.payment_watch()  # the scheduled job finds it by itself
    assert outcome.get("EXPIRED", 0) >= 1
    invoice, payments = await load(db, inv["id"])
    assert invoice.status == "EXPIRED" and invoice.needs_review is True
    assert invoice.late_amount_asset == Decimal("10")
    assert invoice.amount_received_asset == 0
    assert [(p.status, p.late) for p in payments] == [("SETTLED", True)]
    assert len(await events(pg, "billing.payment.detected.v1", inv["id"])) == 1
    assert await events(pg, "billing.invoice.paid.v1", inv["id"]) == []



async def test_many_closed_invoices_never_crowd_out_an_open_one_and_each_is_seen_in_turn(
        sandbox, db, monkeypatch):
    """More recently closed invoices than a page: a run still watches every open invoice (one
    paid now is PAID at once), and the closed ones are paged run after run, so a late payment to
    each of them is recorded once, whichever page it is on."""
    monkeypatch.setattr(watch, "WATCH_BATCH", 3)
    plan_id = await new_plan(db)
    closed = []
    for i in range(8):
        inv = await new_invoice(sandbox, db, plan_id, user=f"u-crowd-{i}")
        invoice, _ = await load(db, inv["id"])
        later = invoice.rate_locked_until + timedelta(seconds=1)
        assert await sandbox.watcher.watch_one(inv["id"], now=later) == "EXPIRED"
        closed.append(inv)
    fresh = await new_invoice(sandbox, db, plan_id, user="u-crowd-open")
    await pay(db, fresh, Decimal(fresh["amount_asset"]), blocks=2)
    for inv in closed:
        await pay(db, inv, Decimal("1"), blocks=2)
    await sandbox.watcher.payment_watch()
    assert (await load(db, fresh["id"]))[0].status == "PAID"
    for _ in range(100):  # every closed invoice of the schema, 3 a run (other tests' too)
        late = [len((await load(db, inv["id"]))[1]) for inv in closed]
        if all(late):
            break
        await sandbox.watcher.payment_watch()
    assert late == [1] * len(closed)
    for inv in closed:
        invoice, payments = await load(db, inv["id"])
        assert invoice.status == "EXPIRED" and invoice.late_amount_asset == Decimal("1")
        assert [(p.status, p.late) for p in payments] == [("SETTLED", True)]


async def test_payment_watch_settles_a_batch_each_invoice_by_its_own_transfers(sandbox, db, pg):
    """One batch observation of the chain: each invoice gets exactly its own payments; a
    transfer of another coin to the same address does not count; unpaid ones stay open."""
    plan_id = await new_plan(db)
    paid = [await new_invoice(sandbox, db, plan_id, user=f"u-batch-{i}") for i in range(3)]
    btc = await new_invoice(sandbox, db, plan_id, user="u-batch-btc", asset="BTC",
                            network="BITCOIN")
    unpaid = await new_invoice(sandbox, db, plan_id, user="u-batch-none")
    for inv in paid:
        await pay(db, inv, Decimal(inv["amount_asset"]))
    async with db.transaction() as s:  # right address, wrong coin
        await sandbox_chain.transfer(s, address=btc["address"], amount_asset=Decimal("1"),
                                     asset="ETH", network="BITCOIN")
    await mine(db, 2)
    await sandbox.watcher.payment_watch()
    await sandbox.watcher.payment_watch()  # a second pass changes nothing
    for inv in paid:
        invoice, payments = await load(db, inv["id"])
        assert invoice.status == "PAID" and len(payments) == 1
        assert payments[0].amount_asset == Decimal(inv["amount_asset"])
        assert len(await events(pg, "billing.invoice.paid.v1", inv["id"])) == 1
    for inv in (btc, unpaid):
        invoice, payments = await load(db, inv["id"])
        assert invoice.status == "CREATED" and payments == []


async def test_payment_to_a_canceled_invoice_is_flagged(sandbox, db):
    inv = await new_invoice(sandbox, db, await new_plan(db))
    async with db.transaction() as s:
        invoice = await sandbox.billing.get_visible(s, "user-1", inv["id"], for_update=True)
        await sandbox.billing.cancel(s, invoice)
    await pay(db, inv, Decimal("10"), blocks=2)
    assert await sandbox.watcher.watch_one(inv["id"]) == "CANCELED"
    invoice, payments = await load(db, inv["id"])
    assert invoice.needs_review and invoice.late_amount_asset == Decimal("10")
    assert [p.late for p in payments] == [True]


async def test_invoice_expiry_job_expires_only_past_the_lock(sandbox, db):
    inv = await new_invoice(sandbox, db, await new_plan(db))
    await sandbox.watcher.invoice_expiry()
    assert (await load(db, inv["id"]))[0].status == "CREATED"
    async with db.transaction() as s:
        invoice = await InvoiceRepository(s).get(inv["id"], for_update=True)
        invoice.rate_locked_until = utcnow() - timedelta(seconds=1)
    await sandbox.watcher.invoice_expiry()
    assert (await load(db, inv["id"]))[0].status == "EXPIRED"



async def test_provider_outage_refuses_new_invoices_and_delays_settling_without_loss(
        sandbox, db, pg):
    """An injected sandbox outage: calls hang `delay_ms`, then fail as a timed-out provider."""
    plan_id = await new_plan(db)
    body = InvoiceCreate(plan_id=plan_id, asset="USDT", network="TRON")
    key = uuid.uuid4().hex
    faults = sandbox.billing.providers.get("sandbox").faults
    try:
        await faults.add("create_checkout", message="timed out", delay_ms=50)
        with pytest.raises(ServiceUnavailable):
            await sandbox.billing.create_invoice_idempotent(db, user_id="u-out", key=key,
                                                            body=body)
        # nothing was stored: neither the invoice nor the key, so the client's retry is new
        assert await pg.fetchval(
            "SELECT count(*) FROM billing.invoices WHERE user_id = 'u-out'") == 0
        assert await pg.fetchval("SELECT count(*) FROM billing.idempotency_keys WHERE key = $1",
                                 key) == 0
        await faults.clear()
        result = await sandbox.billing.create_invoice_idempotent(db, user_id="u-out", key=key,
                                                                 body=body)
        assert result.status == 201 and not result.replayed
        inv = result.json()["invoice"]

        await pay(db, inv, Decimal(inv["amount_asset"]), blocks=2)
        await faults.add("observe", message="timed out", for_seconds=1.0)
        assert await sandbox.watcher.watch_one(inv["id"]) == "provider_error"
        async with db.transaction() as s:  # the lock passes during the outage
            invoice = await InvoiceRepository(s).get(inv["id"], for_update=True)
            invoice.rate_locked_until = utcnow() - timedelta(seconds=1)
        await sandbox.watcher.invoice_expiry()
        invoice, payments = await load(db, inv["id"])
        assert invoice.status == "CREATED" and payments == []  # not expired unseen
        await asyncio.sleep(1.1)  # the fault ends by itself
        assert await sandbox.watcher.watch_one(inv["id"]) == "PAID"
        assert len(await events(pg, "billing.invoice.paid.v1", inv["id"])) == 1
    finally:
        await faults.clear()


async def test_plan_in_use_is_deactivated_never_deleted(sandbox, db):
    used, unused = await new_plan(db), await new_plan(db)
    await new_invoice(sandbox, db, used)
    async with db.transaction() as s:
        plan, deleted = await plan_service.delete(s, used)
        assert deleted is False and plan.is_active is False
        plan, deleted = await plan_service.delete(s, unused)
        assert deleted is True
    async with db.transaction() as s:
        assert (await PlanRepository(s).get(used)).is_active is False
        assert await PlanRepository(s).get(unused) is None
    with pytest.raises(ValidationFailed):  # an inactive plan cannot be ordered
        await new_invoice(sandbox, db, used)


async def test_idempotent_creation(sandbox, db, pg):
    plan_id = await new_plan(db)
    body = InvoiceCreate(plan_id=plan_id, asset="USDT", network="TRON")
    key = uuid.uuid4().hex
    first = await sandbox.billing.create_invoice_idempotent(db, user_id="u-idem", key=key,
                                                            body=body)
    again = await sandbox.billing.create_invoice_idempotent(db, user_id="u-idem", key=key,
                                                            body=body)
    assert again.replayed and again.status == first.status and again.content == first.content
    # the same key belongs to each user separately
    other = await sandbox.billing.create_invoice_idempotent(db, user_id="u-other", key=key,
                                                            body=body)
    assert not other.replayed and other.content != first.content
    with pytest.raises(IdempotencyKeyReused):
        await sandbox.billing.create_invoice_idempotent(
            db, user_id="u-idem", key=key,
            body=InvoiceCreate(plan_id=plan_id, asset="BTC", network="BITCOIN"))
    # a request that fails validation stores nothing under its key
    bad_key = uuid.uuid4().hex
    with pytest.raises(ValidationFailed):
        await sandbox.billing.create_invoice_idempotent(
            db, user_id="u-idem", key=bad_key,
            body=InvoiceCreate(plan_id="no-such-plan", asset="USDT", network="TRON"))
    assert await pg.fetchval("SELECT count(*) FROM billing.idempotency_keys WHERE key = $1",
                             bad_key) == 0
    # a key still in progress answers 409
    busy = uuid.uuid4().hex
    now = utcnow()
    await pg.execute(
        "INSERT INTO billing.idempotency_keys (user_id, key, request_hash, status, lock_token,"
        " created_at, locked_at) VALUES ('u-idem', $1, $2, 'in_progress', 't', $3, $3)",
        busy, invoice_fingerprint(body), now)
    with pytest.raises(IdempotencyInProgress):
        await sandbox.billing.create_invoice_idempotent(db, user_id="u-idem", key=busy,
                                                        body=body)
    count = await pg.fetchval("SELECT count(*) FROM billing.invoices WHERE user_id = 'u-idem'")
    assert count == 1


async def test_retention_prunes_day_old_keys(db, pg):
    old, fresh = uuid.uuid4().hex, uuid.uuid4().hex
    for key, age in ((old, timedelta(hours=25)), (fresh, timedelta(hours=1))):
        await pg.execute(
            "INSERT INTO billing.idempotency_keys (user_id, key, request_hash, status,"
            " lock_token, created_at, locked_at) VALUES ('u-old', $1, 'x', 'done', 't', $2, $2)",
            key, utcnow() - age)
    purged = await run_rules(db, "billing", retention.rules(make_settings()))
    assert purged["idempotency_keys_expired"] >= 1
    left = await pg.fetch("SELECT key FROM billing.idempotency_keys WHERE user_id = 'u-old'")
    assert [r["key"] for r in left] == [fresh]


async def test_a_plans_traffic_allowance_is_on_its_invoices_snapshot(sandbox, db, pg):
    async with db.transaction() as s:
        plan = await plan_service.create(s, PlanCreate(
            name=f"traffic-{uuid.uuid4().hex[:8]}", price_usd="3.00", duration_days=30,
            max_devices=2, traffic_limit_gb=50, traffic_reset="MONTH"))
    user_id = f"u-{uuid.uuid4().hex[:10]}"
    async with db.transaction() as s:
        await ledger.move(s, user_id=user_id, amount=Decimal("3.00"), kind="TOP_UP",
                          key=uuid.uuid4().hex)
    result = await sandbox.billing.create_invoice_idempotent(
        db, user_id=user_id, key=uuid.uuid4().hex,
        body=InvoiceCreate(plan_id=plan.id, asset="USDT", network="TRON", pay_with="balance"))
    invoice_id = result.json()["invoice"]["id"]
    async with db.transaction() as s:  # the plan changes later; the bought snapshot does not
        await plan_service.update(s, plan.id, PlanUpdate(traffic_limit_gb=None,
                                                         traffic_reset="NONE"))
    row = await pg.fetchrow("SELECT envelope FROM billing.outbox WHERE routing_key = "
                            "'billing.invoice.paid.v1' AND envelope->'payload'->>'invoice_id' = $1",
                            invoice_id)
    snapshot = json.loads(row["envelope"])["payload"]["plan"]
    assert (snapshot["traffic_limit_gb"], snapshot["traffic_reset"]) == (50, "MONTH")
