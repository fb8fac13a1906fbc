"""The balance ledger against a real database: running sums, a key moving money once, never
negative (the service's check and the database's), append-only, concurrent debits, paying an
invoice from the balance through the paid path, and a refund crediting it back once."""

from __future__ import annotations

import asyncio
import json
import uuid
from decimal import Decimal

import asyncpg
import httpx
import pytest

from billing.app import create_api
from billing.exceptions import InsufficientBalance
from billing.providers.sandbox import sandbox_chain
from billing.schemas import InvoiceCreate, PlanCreate, TopUpCreate
from billing.service import ledger, plan_service
from runtime import identity
from runtime.errors import Conflict, ValidationFailed

from .conftest import make_settings

D = Decimal


def user() -> str:
    return f"u-{uuid.uuid4().hex[:12]}"


async def move(db, user_id: str, amount: str, key: str | None = None, kind: str = "ADJUSTMENT"):
    async with db.transaction() as s:
        return await ledger.move(s, user_id=user_id, amount=D(amount), kind=kind,
                                 key=key or uuid.uuid4().hex)


async def balance(db, user_id: str) -> Decimal:
    async with db.transaction() as s:
        return await ledger.balance(s, user_id)


async def entries(pg, user_id: str) -> list:
    return await pg.fetch("SELECT kind, amount_usd, balance_after_usd, invoice_id FROM "
                          "billing.balance_entries WHERE user_id = $1 ORDER BY id", user_id)


async def test_entries_keep_the_running_sum_and_the_balance_is_their_sum(db, pg):
    u = user()
    for amount in ("10.00", "-2.50", "5.25", "-12.75"):
        await move(db, u, amount)
    rows = await entries(pg, u)
    assert [r["balance_after_usd"] for r in rows] == [D("10.00"), D("7.50"), D("12.75"), D("0")]
    assert await balance(db, u) == sum(r["amount_usd"] for r in rows) == D("0")
    async with db.transaction() as s:
        first, cursor = await ledger.entries(s, u, limit=3, cursor=None)
        rest, end = await ledger.entries(s, u, limit=3, cursor=cursor)
    assert [e.amount_usd for e in first + rest] == [D("-12.75"), D("5.25"), D("-2.50"),
                                                    D("10.00")]
    assert end is None


async def test_a_key_moves_money_once_and_never_other_money(db, pg):
    u = user()
    first = await move(db, u, "4.00", key=f"k-{u}")
    again = await move(db, u, "4.00", key=f"k-{u}")
    assert first.applied and not again.applied and again.entry.id == first.entry.id
    assert await balance(db, u) == D("4.00") and len(await entries(pg, u)) == 1
    with pytest.raises(Conflict):
        await move(db, u, "5.00", key=f"k-{u}")


async def test_taking_more_than_the_balance_is_refused_and_changes_nothing(db, pg):
    u = user()
    await move(db, u, "3.00")
    with pytest.raises(InsufficientBalance) as refused:
        await move(db, u, "-3.01")
    assert refused.value.status == 409 and refused.value.details == {
        "balance_usd": "3.00", "needed_usd": "3.01"}
    assert await balance(db, u) == D("3.00") and len(await entries(pg, u)) == 1


async def test_the_database_itself_refuses_a_negative_balance_and_changing_an_entry(db, pg):
    u = user()
    await move(db, u, "1.00")
    with pytest.raises(asyncpg.CheckViolationError):
        await pg.execute("UPDATE billing.balances SET balance_usd = -1 WHERE user_id = $1", u)
    for statement in ("UPDATE billing.balance_entries SET amount_usd = 99 WHERE user_id = $1",
                      "DELETE FROM billing.balance_entries WHERE user_id = $1"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await pg.execute(statement, u)
    assert [r["amount_usd"] for r in await entries(pg, u)] == [D("1.00")]


async def test_concurrent_debits_never_take_more_than_the_balance(db, pg):
    u = user()
    await move(db, u, "10.00")
    results = await asyncio.gather(*(move(db, u, "-1.00") for _ in range(20)),
                                   return_exceptions=True)
    taken = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, InsufficientBalance)]
    assert len(taken) == 10 and len(refused) == 10, results
    rows = await entries(pg, u)
    running = D(0)
    for r in rows:
        running += r["amount_usd"]
        assert r["balance_after_usd"] == running
    assert running == await balance(db, u) == D("0")


async def new_plan(db, price: str) -> str:
    async with db.transaction() as s:
        plan = await plan_service.create(s, PlanCreate(
            name=f"plan-{uuid.uuid4().hex[:10]}", price_usd=price, duration_days=30,
            max_devices=2))
        return plan.id


async def buy_from_balance(sandbox, db, u: str, plan_id: str, key: str):
    return await sandbox.billing.create_invoice_idempotent(
        db, user_id=u, key=key,
        body=InvoiceCreate(plan_id=plan_id, asset="USDT", network="TRON", pay_with="balance"))


async def paid_events(pg, invoice_id: str) -> list[dict]:
    rows = await pg.fetch("SELECT envelope FROM billing.outbox WHERE routing_key = "
                          "'billing.invoice.paid.v1' AND envelope->'payload'->>'invoice_id' = $1",
                          invoice_id)
    return [json.loads(r["envelope"])["payload"] for r in rows]


async def test_an_invoice_paid_from_the_balance_is_paid_at_once_through_the_paid_path(
        sandbox, db, pg):
    u, plan_id, key = user(), await new_plan(db, "7.00"), uuid.uuid4().hex
    await move(db, u, "10.00", kind="TOP_UP")
    result = await buy_from_balance(sandbox, db, u, plan_id, key)
    invoice = result.json()["invoice"]
    assert result.status == 201 and invoice["status"] == "PAID"
    assert (invoice["amount_usd"], invoice["asset"], invoice["network"]) == ("7.00", "USD",
                                                                             "BALANCE")
    assert [e["amount_paid_asset"] for e in await paid_events(pg, invoice["id"])] == ["7.00"]
    # The same request again replays the answer; no second charge.
    again = await buy_from_balance(sandbox, db, u, plan_id, key)
    assert again.replayed and again.json() == result.json()
    rows = await entries(pg, u)
    assert [(r["kind"], r["amount_usd"], r["invoice_id"]) for r in rows] == [
        ("TOP_UP", D("10.00"), None), ("PURCHASE", D("-7.00"), invoice["id"])]
    assert await balance(db, u) == D("3.00")


async def test_a_balance_too_small_creates_no_invoice(sandbox, db, pg):
    u, plan_id = user(), await new_plan(db, "7.00")
    await move(db, u, "6.99", kind="TOP_UP")
    with pytest.raises(InsufficientBalance):
        await buy_from_balance(sandbox, db, u, plan_id, uuid.uuid4().hex)
    assert await pg.fetchval("SELECT count(*) FROM billing.invoices WHERE user_id = $1", u) == 0
    assert await balance(db, u) == D("6.99")


async def test_refunding_a_balance_paid_invoice_credits_it_back_once(sandbox, db, pg):
    u, plan_id = user(), await new_plan(db, "7.00")
    await move(db, u, "7.00", kind="TOP_UP")
    invoice = (await buy_from_balance(sandbox, db, u, plan_id, uuid.uuid4().hex)
               ).json()["invoice"]
    async with db.transaction() as s:
        row = await sandbox.billing.get_visible(s, None, invoice["id"], for_update=True)
        await sandbox.billing.refund(s, row, reason="changed my mind", actor_id="admin-1")
    assert await balance(db, u) == D("7.00")
    assert [r["kind"] for r in await entries(pg, u)] == ["TOP_UP", "PURCHASE", "REFUND"]
    async with db.transaction() as s:  # a refund of a refunded invoice is refused: no credit
        row = await sandbox.billing.get_visible(s, None, invoice["id"], for_update=True)
        with pytest.raises(Conflict):
            await sandbox.billing.refund(s, row, reason="again", actor_id="admin-1")
    assert await balance(db, u) == D("7.00")


# ---- the internal API --------------------------------------------------------------------------
@pytest.fixture
async def api(migrated):
    app = create_api(make_settings())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://billing") as client:
        yield client
    await app.state.db.dispose()


def as_(user_id: str, role: str = "USER") -> dict[str, str]:
    key = make_settings().internal_signing_key
    return {identity.HEADER: identity.sign(key, user_id, role, audience="billing")}


async def test_a_customer_reads_their_own_balance_only(api, db):
    u, other = user(), user()
    await move(db, u, "2.00", kind="TOP_UP")
    await move(db, other, "9.00", kind="TOP_UP")
    r = await api.get("/internal/balance", headers=as_(u))
    assert r.status_code == 200
    body = r.json()
    assert body["balance_usd"] == "2.00" and body["next_cursor"] is None
    assert [(e["kind"], e["amount_usd"], e["balance_after_usd"]) for e in body["entries"]] == [
        ("TOP_UP", "2.00", "2.00")]


async def test_an_admin_adjustment_moves_money_once_per_key_and_never_below_zero(api, db, pg):
    u, admin = user(), as_("admin-1", "ADMIN")
    url = f"/internal/admin/users/{u}/balance/adjustments"
    headers = {**admin, "Idempotency-Key": "adj-1"}
    first = await api.post(url, json={"amount_usd": "5.00", "note": "goodwill"}, headers=headers)
    again = await api.post(url, json={"amount_usd": "5.00", "note": "goodwill"}, headers=headers)
    assert first.status_code == 201 and again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true" and again.json() == first.json()
    assert first.json()["balance_usd"] == "5.00"
    too_much = await api.post(url, json={"amount_usd": "-5.01", "note": "oops"},
                              headers={**admin, "Idempotency-Key": "adj-2"})
    assert too_much.status_code == 409 and too_much.json()["code"] == "INSUFFICIENT_BALANCE"
    for bad in ({"amount_usd": "0", "note": "x"}, {"amount_usd": "5.001", "note": "x"},
                {"amount_usd": "5.00", "note": ""}, {"amount_usd": "5.00"}):
        r = await api.post(url, json=bad, headers={**admin, "Idempotency-Key": "adj-3"})
        assert r.status_code == 400 and r.json()["code"] == "VALIDATION_ERROR", bad
    r = await api.post(url, json={"amount_usd": "1.00", "note": "x"}, headers=as_(u))
    assert r.status_code == 403
    r = await api.post(url, json={"amount_usd": "1.00", "note": "x"}, headers=admin)
    assert r.status_code == 400 and r.json()["code"] == "IDEMPOTENCY_KEY_REQUIRED"
    read = await api.get(f"/internal/admin/users/{u}/balance", headers=admin)
    assert read.json()["balance_usd"] == "5.00" and len(read.json()["entries"]) == 1
    assert await pg.fetchval("SELECT actor_id FROM billing.balance_entries WHERE user_id = $1",
                             u) == "admin-1"


# ---- top-ups -----------------------------------------------------------------------------------
async def top_up(sandbox, db, u: str, amount: str, key: str | None = None):
    return await sandbox.billing.create_top_up_idempotent(
        db, user_id=u, key=key or uuid.uuid4().hex,
        body=TopUpCreate(amount_usd=amount, asset="USDT", network="TRON"))


async def settle(sandbox, db, invoice: dict) -> str:
    async with db.transaction() as s:
        await sandbox_chain.transfer(s, address=invoice["address"], asset=invoice["asset"],
                                     network=invoice["network"],
                                     amount_asset=D(invoice["amount_asset"]))
        await sandbox_chain.mine(s, 3)
    return await sandbox.watcher.watch_one(invoice["id"])


async def test_a_paid_top_up_adds_to_the_balance_once_and_grants_nothing(sandbox, db, pg):
    u = user()
    result = await top_up(sandbox, db, u, "25.00")
    invoice = result.json()["invoice"]
    assert result.status == 201
    assert (invoice["kind"], invoice["plan_id"], invoice["amount_usd"]) == ("TOP_UP", None,
                                                                          "25.00")
    assert await settle(sandbox, db, invoice) == "PAID"
    results = await asyncio.gather(*(sandbox.watcher.watch_one(invoice["id"]) for _ in range(3)))
    assert results == ["PAID"] * 3
    assert [(r["kind"], r["amount_usd"], r["invoice_id"]) for r in await entries(pg, u)] == [
        ("TOP_UP", D("25.00"), invoice["id"])]
    assert await balance(db, u) == D("25.00")
    assert await paid_events(pg, invoice["id"]) == []  # nothing for the provisioner to grant


async def test_a_top_up_outside_the_limits_is_refused_and_stores_nothing(sandbox, db, pg):
    u = user()
    for amount in ("0.99", "1000.01"):
        with pytest.raises(ValidationFailed):
            await top_up(sandbox, db, u, amount)
    assert await pg.fetchval("SELECT count(*) FROM billing.invoices WHERE user_id = $1", u) == 0
    assert await pg.fetchval("SELECT count(*) FROM billing.idempotency_keys WHERE user_id = $1",
                             u) == 0


async def test_refunding_a_top_up_takes_it_back_unless_it_was_spent(sandbox, db, pg):
    u, plan_id = user(), await new_plan(db, "7.00")
    spent = (await top_up(sandbox, db, u, "7.00")).json()["invoice"]
    kept = (await top_up(sandbox, db, u, "3.00")).json()["invoice"]
    for invoice in (spent, kept):
        assert await settle(sandbox, db, invoice) == "PAID"
    await buy_from_balance(sandbox, db, u, plan_id, uuid.uuid4().hex)  # 10.00 -> 3.00

    async def refund(invoice_id: str):
        async with db.transaction() as s:
            row = await sandbox.billing.get_visible(s, None, invoice_id, for_update=True)
            await sandbox.billing.refund(s, row, reason="chargeback", actor_id="admin-1")

    await refund(kept["id"])
    assert await balance(db, u) == D("0.00")
    with pytest.raises(InsufficientBalance):
        await refund(spent["id"])
    status = await pg.fetchval("SELECT status FROM billing.invoices WHERE id = $1", spent["id"])
    assert status == "PAID" and await balance(db, u) == D("0.00")


async def test_a_balance_never_grows_past_what_its_column_holds(db):
    u = user()
    await move(db, u, "9999999999.00")
    with pytest.raises(Conflict, match="cannot hold"):
        await move(db, u, "1.00")
    assert await balance(db, u) == D("9999999999.00")


async def test_an_invoice_paid_on_chain_can_be_refunded_to_the_balance_once(sandbox, db, pg):
    u, plan_id = user(), await new_plan(db, "7.00")
    result = await sandbox.billing.create_invoice_idempotent(
        db, user_id=u, key=uuid.uuid4().hex,
        body=InvoiceCreate(plan_id=plan_id, asset="USDT", network="TRON"))
    invoice = result.json()["invoice"]
    assert await settle(sandbox, db, invoice) == "PAID"

    async def refund(invoice_id: str, to: str):
        async with db.transaction() as s:
            row = await sandbox.billing.get_visible(s, None, invoice_id, for_update=True)
            await sandbox.billing.refund(s, row, reason="outage", actor_id="admin-1", to=to)

    await refund(invoice["id"], "balance")
    assert [(r["kind"], r["amount_usd"], r["invoice_id"]) for r in await entries(pg, u)] == [
        ("REFUND", D("7.00"), invoice["id"])]
    with pytest.raises(Conflict):  # REFUNDED already: no second credit
        await refund(invoice["id"], "balance")
    assert await balance(db, u) == D("7.00")

    top_up_invoice = (await top_up(sandbox, db, u, "2.00")).json()["invoice"]
    assert await settle(sandbox, db, top_up_invoice) == "PAID"
    with pytest.raises(Conflict, match="top-up"):
        await refund(top_up_invoice["id"], "balance")
    assert await balance(db, u) == D("9.00")
