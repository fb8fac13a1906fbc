"""Promo codes against a real database: what each kind gives, every limit and its reason, a
use reserved at creation, counted when paid and released when the invoice expires, never more
uses than `max_uses` under 50 concurrent invoices, and a 100 % code paid at once."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta

import pytest

from billing.exceptions import PromoCodeInvalid
from billing.providers.sandbox import sandbox_chain
from billing.schemas import InvoiceCreate, PlanCreate, PromoCodeCreate
from billing.service import plan_service, promos, utcnow

D = __import__("decimal").Decimal


def user() -> str:
    return f"u-{uuid.uuid4().hex[:12]}"


def code() -> str:
    return f"T{uuid.uuid4().hex[:10]}"


async def new_plan(db, price: str = "10.00") -> str:
    async with db.transaction() as s:
        plan = await plan_service.create(s, PlanCreate(
            name=f"plan-{uuid.uuid4().hex[:10]}", price_usd=price, duration_days=30,
            max_devices=2))
        return plan.id


async def new_code(db, **fields) -> str:
    body = PromoCodeCreate(**{"code": code(), "kind": "PERCENT", "value": "25", **fields})
    async with db.transaction() as s:
        await promos.create(s, body, uuid.uuid4().hex, utcnow())
    return body.code


async def buy(sandbox, db, u: str, plan_id: str, promo: str | None, **extra) -> dict:
    result = await sandbox.billing.create_invoice_idempotent(
        db, user_id=u, key=uuid.uuid4().hex,
        body=InvoiceCreate(plan_id=plan_id, asset="USDT", network="TRON", promo_code=promo,
                           **extra))
    return result.json()["invoice"]


async def uses(pg, promo: str) -> tuple[int, int]:
    row = await pg.fetchrow("SELECT uses_reserved, uses_counted FROM billing.promo_codes "
                            "WHERE code = lower($1)", promo)
    return row["uses_reserved"], row["uses_counted"]


async def paid_payloads(pg, invoice_id: str) -> list[dict]:
    rows = await pg.fetch("SELECT envelope FROM billing.outbox WHERE routing_key = "
                          "'billing.invoice.paid.v1' AND envelope->'payload'->>'invoice_id' = $1",
                          invoice_id)
    return [json.loads(r["envelope"])["payload"] for r in rows]


@pytest.mark.parametrize(("kind", "value", "amount", "discount", "days"), [
    ("PERCENT", "25", "7.50", "2.50", 0),
    ("AMOUNT", "3.00", "7.00", "3.00", 0),
    ("AMOUNT", "50.00", None, "10.00", 0),  # never below zero: free, paid at once
    ("DAYS", "7", "10.00", "0.00", 7),
])
async def test_each_kind_gives_what_it_says(sandbox, db, pg, kind, value, amount, discount, days):
    plan_id, promo = await new_plan(db), await new_code(db, kind=kind, value=value)
    invoice = await buy(sandbox, db, user(), plan_id, promo.lower())  # codes ignore case
    assert (invoice["promo_code"], invoice["discount_usd"], invoice["bonus_days"]) == (
        promo.lower(), discount, days)
    if amount is None:
        assert invoice["status"] == "PAID" and invoice["amount_usd"] == "0.00"
        assert [p["bonus_days"] for p in await paid_payloads(pg, invoice["id"])] == [0]
        assert await uses(pg, promo) == (0, 1)
    else:
        assert invoice["status"] == "CREATED" and invoice["amount_usd"] == amount
        assert await uses(pg, promo) == (1, 0)


@pytest.mark.parametrize(("fields", "reason"), [
    ({"ends_at": utcnow() - timedelta(days=1), "starts_at": utcnow() - timedelta(days=2)},
     "expired"),
    ({"starts_at": utcnow() + timedelta(days=1)}, "not_started"),
    ({"plan_ids": ["some-other-plan"]}, "not_for_plan"),
])
async def test_a_code_outside_its_limits_is_refused_with_its_reason(sandbox, db, pg, fields,
                                                                     reason):
    plan_id, promo = await new_plan(db), await new_code(db, **fields)
    u = user()
    with pytest.raises(PromoCodeInvalid) as refused:
        await buy(sandbox, db, u, plan_id, promo)
    assert refused.value.status == 422 and refused.value.details == {"reason": reason}
    assert await pg.fetchval("SELECT count(*) FROM billing.invoices WHERE user_id = $1", u) == 0
    assert await pg.fetchval("SELECT count(*) FROM billing.idempotency_keys WHERE user_id = $1",
                             u) == 0
    with pytest.raises(PromoCodeInvalid) as unknown:
        await buy(sandbox, db, u, plan_id, "NOSUCHCODE")
    assert unknown.value.details == {"reason": "unknown"}


async def test_per_user_and_first_purchase_limits(sandbox, db, pg):
    plan_id, u = await new_plan(db), user()
    once = await new_code(db, max_uses_per_user=1)
    await buy(sandbox, db, u, plan_id, once)
    with pytest.raises(PromoCodeInvalid) as again:
        await buy(sandbox, db, u, plan_id, once)
    assert again.value.details == {"reason": "already_used"}
    await buy(sandbox, db, user(), plan_id, once)  # another customer still may

    first = await new_code(db, first_purchase_only=True, kind="AMOUNT", value="10.00")
    await buy(sandbox, db, u, plan_id, first)  # free: paid at once, u's first purchase
    with pytest.raises(PromoCodeInvalid) as returning:
        await buy(sandbox, db, u, plan_id, await new_code(db, first_purchase_only=True))
    assert returning.value.details == {"reason": "already_used"}


async def test_fifty_concurrent_invoices_never_take_more_than_max_uses(sandbox, db, pg):
    plan_id, promo = await new_plan(db), await new_code(db, max_uses=10)
    results = await asyncio.gather(*(buy(sandbox, db, user(), plan_id, promo)
                                     for _ in range(50)), return_exceptions=True)
    made = [r for r in results if isinstance(r, dict)]
    refused = [r for r in results if isinstance(r, PromoCodeInvalid)]
    assert len(made) == 10 and len(refused) == 40, [r for r in results
                                                    if not isinstance(r, dict | PromoCodeInvalid)]
    assert {r.details["reason"] for r in refused} == {"used_up"}
    assert await uses(pg, promo) == (10, 0)
    assert await pg.fetchval("SELECT count(*) FROM billing.promo_redemptions r JOIN "
                             "billing.promo_codes c ON c.id = r.code_id WHERE c.code = lower($1)",
                             promo) == 10


async def test_a_use_is_counted_when_paid_and_released_when_the_invoice_expires(sandbox, db, pg):
    plan_id, promo = await new_plan(db), await new_code(db, max_uses=1, kind="DAYS", value="5")
    invoice = await buy(sandbox, db, user(), plan_id, promo)
    with pytest.raises(PromoCodeInvalid):  # the one use is reserved
        await buy(sandbox, db, user(), plan_id, promo)
    later = utcnow() + timedelta(hours=2)
    assert await sandbox.watcher.watch_one(invoice["id"], now=later) == "EXPIRED"
    assert await uses(pg, promo) == (0, 0)  # released: available again
    second = await buy(sandbox, db, user(), plan_id, promo)
    async with db.transaction() as s:
        await sandbox_chain.transfer(s, address=second["address"], asset=second["asset"],
                                     network=second["network"],
                                     amount_asset=D(second["amount_asset"]))
        await sandbox_chain.mine(s, 3)
    assert await sandbox.watcher.watch_one(second["id"]) == "PAID"
    assert await sandbox.watcher.watch_one(second["id"]) == "PAID"  # counted once
    assert await uses(pg, promo) == (0, 1)
    assert [p["bonus_days"] for p in await paid_payloads(pg, second["id"])] == [5]
    redeemed = await pg.fetchval("SELECT count(*) FROM billing.outbox WHERE routing_key = "
                                 "'billing.promo_code.redeemed.v1' AND "
                                 "envelope->'payload'->>'invoice_id' = $1", second["id"])
    assert redeemed == 1


async def test_a_canceled_invoice_releases_its_use(sandbox, db, pg):
    plan_id, promo, u = await new_plan(db), await new_code(db, max_uses=1), user()
    invoice = await buy(sandbox, db, u, plan_id, promo)
    async with db.transaction() as s:
        row = await sandbox.billing.get_visible(s, u, invoice["id"], for_update=True)
        await sandbox.billing.cancel(s, row)
    assert await uses(pg, promo) == (0, 0)
