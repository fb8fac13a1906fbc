"""Referrals against a real database: a referral recorded once from the registration event, an
unknown code or the customer's own ignored, the same person by Telegram refused (when recorded
and when rewarded), the reward once per referred customer (a redelivered paid path, concurrent
watches, a referral recorded while its invoice is paid), the percent rounded to the cent, days
mode as an event, and the reversal on refund: taken from the balance, the rest owed and paid
from the next credit."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest

from billing.app import create_api
from billing.consumers import build_identity_subscription, build_subscription
from billing.models import Plan
from billing.providers.sandbox import sandbox_chain
from billing.referrals import normalize, reward_amount
from billing.schemas import InvoiceCreate, PlanCreate, PromoCodeCreate
from billing.service import ledger, plan_service, promos, referrals, utcnow
from billing.wiring import build_components
from contracts import make_envelope
from contracts.identity import UserRegisteredV1
from contracts.telegram import AccountLinkedV1
from runtime import identity

from .conftest import make_settings

D = Decimal


def user() -> str:
    return f"u-{uuid.uuid4().hex[:12]}"


def telegram_id() -> int:
    return 7_100_000_000 + uuid.uuid4().int % 10**8


async def code_of(db, user_id: str) -> str:
    async with db.transaction() as s:
        return await referrals.code_for(s, user_id, utcnow())


async def register(db, user_id: str, code: str | None, settings=None, times: int = 2) -> None:
    """The registration event as billing consumes it (delivered `times` times)."""
    event = UserRegisteredV1(user_id=user_id, email=f"{user_id}@example.com", role="USER",
                             registered_at=datetime.now(UTC), referral_code=code)
    handle = build_identity_subscription(db, settings or make_settings()).handlers[
        UserRegisteredV1.routing_key()]
    env = make_envelope(event, producer="gateway")
    for _ in range(times):
        await handle(env, event)


async def link(db, user_id: str, tg: int) -> None:
    event = AccountLinkedV1(user_id=user_id, telegram_user_id=tg, telegram_username=None,
                            linked_at=datetime.now(UTC))
    await build_subscription(db).handlers[AccountLinkedV1.routing_key()](
        make_envelope(event, producer="telegram"), event)


async def referral(pg, referred: str):
    return await pg.fetchrow("SELECT * FROM billing.referrals WHERE referred_user_id = $1",
                             referred)


async def new_plan(db, price: str = "10.00") -> str:
    async with db.transaction() as s:
        plan = await plan_service.create(s, PlanCreate(
            name=f"plan-{uuid.uuid4().hex[:10]}", price_usd=price, duration_days=30,
            max_devices=1))
        return plan.id


async def credit(db, user_id: str, amount: str, kind: str = "ADJUSTMENT"):
    async with db.transaction() as s:
        return await ledger.move(s, user_id=user_id, amount=D(amount), kind=kind,
                                 key=uuid.uuid4().hex)


async def buy_from_balance(billing, db, u: str, plan_id: str) -> dict:
    """A PLAN invoice paid at once from a balance topped up for it."""
    async with db.transaction() as s:
        price = (await s.get(Plan, plan_id)).price_usd
    await credit(db, u, str(price), kind="TOP_UP")
    result = await billing.create_invoice_idempotent(
        db, user_id=u, key=uuid.uuid4().hex,
        body=InvoiceCreate(plan_id=plan_id, asset="USDT", network="TRON", pay_with="balance"))
    return result.json()["invoice"]


async def balance(db, user_id: str) -> Decimal:
    async with db.transaction() as s:
        return await ledger.balance(s, user_id)


async def chain_invoice(billing, db, u: str, plan_id: str) -> dict:
    result = await billing.create_invoice_idempotent(
        db, user_id=u, key=uuid.uuid4().hex,
        body=InvoiceCreate(plan_id=plan_id, asset="USDT", network="TRON"))
    invoice = result.json()["invoice"]
    async with db.transaction() as s:
        await sandbox_chain.transfer(s, address=invoice["address"], asset=invoice["asset"],
                                     network=invoice["network"],
                                     amount_asset=D(invoice["amount_asset"]))
        await sandbox_chain.mine(s, 3)
    return invoice


async def refund(billing, db, invoice_id: str) -> None:
    async with db.transaction() as s:
        row = await billing.get_visible(s, None, invoice_id, for_update=True)
        await billing.refund(s, row, reason="chargeback", actor_id="admin-1")


async def entries(pg, user_id: str) -> list[tuple]:
    rows = await pg.fetch("SELECT kind, amount_usd, balance_after_usd, idempotency_key FROM "
                          "billing.balance_entries WHERE user_id = $1 ORDER BY id", user_id)
    return [(r["kind"], r["amount_usd"], r["balance_after_usd"], r["idempotency_key"])
            for r in rows]


async def owed(pg, user_id: str) -> Decimal:
    return await pg.fetchval("SELECT owed_usd FROM billing.balances WHERE user_id = $1",
                             user_id)


async def published(pg, routing_key: str, referred: str) -> list[dict]:
    rows = await pg.fetch("SELECT envelope FROM billing.outbox WHERE routing_key = $1 AND "
                          "envelope->'payload'->>'referred_user_id' = $2 ORDER BY id",
                          routing_key, referred)
    return [json.loads(r["envelope"])["payload"] for r in rows]


async def referred_by(db, referrer: str, settings=None) -> str:
    referred = user()
    await register(db, referred, (await code_of(db, referrer)).upper(), settings)
    return referred


# ---- codes and recording ------------------------------------------------------------------------
async def test_a_code_is_made_once_per_customer_and_is_url_safe(db, pg):
    u = user()
    codes = await asyncio.gather(*(code_of(db, u) for _ in range(5)))
    assert len(set(codes)) == 1 and normalize(codes[0].upper()) == codes[0]
    assert codes[0].isalnum() and codes[0] == codes[0].lower() and len(codes[0]) == 10
    assert await pg.fetchval("SELECT count(*) FROM billing.referral_codes WHERE user_id = $1",
                             u) == 1
    assert await code_of(db, user()) != codes[0]


async def test_a_referral_is_recorded_once_from_the_registration_event(db, pg):
    referrer, other = user(), user()
    referred = await referred_by(db, referrer)  # the code in capitals: case-insensitive
    row = await referral(pg, referred)
    assert (row["referrer_user_id"], row["status"], row["code"]) == (
        referrer, "PENDING", await code_of(db, referrer))
    await register(db, referred, await code_of(db, other))  # another event, another code
    assert (await referral(pg, referred))["referrer_user_id"] == referrer


@pytest.mark.parametrize("code", [None, "", "nosuchcode", "bad code!", "x" * 100])
async def test_an_unknown_or_malformed_code_is_ignored(db, pg, code):
    referred = user()
    await register(db, referred, code)
    assert await referral(pg, referred) is None


async def test_no_one_refers_themselves_by_account_or_by_telegram(sandbox, db, pg):
    me = user()
    await register(db, me, await code_of(db, me))
    assert await referral(pg, me) is None

    referrer, twin, tg = user(), user(), telegram_id()
    await link(db, referrer, tg)
    await link(db, twin, tg)  # a second account of the same Telegram user
    await register(db, twin, await code_of(db, referrer))
    assert (await referral(pg, twin))["status"] == "REFUSED"
    await buy_from_balance(sandbox.billing, db, twin, await new_plan(db))
    assert [e[0] for e in await entries(pg, referrer)] == []


async def test_a_telegram_link_made_after_sign_up_is_checked_when_rewarding(sandbox, db, pg):
    referrer, referred, tg = user(), user(), telegram_id()
    await register(db, referred, await code_of(db, referrer))
    await link(db, referrer, tg)
    await link(db, referred, tg)
    await buy_from_balance(sandbox.billing, db, referred, await new_plan(db))
    assert (await referral(pg, referred))["status"] == "REFUSED"
    assert await entries(pg, referrer) == []
    assert await published(pg, "billing.referral.rewarded.v1", referred) == []


# ---- the reward ---------------------------------------------------------------------------------
def test_the_percent_is_rounded_half_up_to_the_cent():
    assert reward_amount(D("9.99"), D("10")) == D("1.00")
    assert reward_amount(D("7.45"), D("10")) == D("0.75")
    assert reward_amount(D("7.44"), D("10")) == D("0.74")
    assert reward_amount(D("3.33"), D("15")) == D("0.50")
    assert reward_amount(D("0.04"), D("10")) == D("0.00")


async def test_the_first_paid_invoice_rewards_the_referrer_once(sandbox, db, pg):
    referrer = user()
    referred = await referred_by(db, referrer)
    plan_id = await new_plan(db, "7.45")
    invoice = await buy_from_balance(sandbox.billing, db, referred, plan_id)
    assert await entries(pg, referrer) == [
        ("REFERRAL_REWARD", D("0.75"), D("0.75"), f"referral:{referred}:reward")]
    row = await referral(pg, referred)
    assert (row["status"], row["invoice_id"], row["reward_usd"], row["reward_days"]) == (
        "REWARDED", invoice["id"], D("0.75"), 0)
    [event] = await published(pg, "billing.referral.rewarded.v1", referred)
    assert (event["referrer_user_id"], event["invoice_id"], event["amount_usd"],
            event["days"]) == (referrer, invoice["id"], "0.75", 0)

    # The paid path run again for the same invoice (a redelivery, a replay) gives nothing more.
    async with db.transaction() as s:
        row = await sandbox.billing.get_visible(s, None, invoice["id"], for_update=True)
        await referrals.on_paid(s, row, utcnow(), make_settings())
    # A second paid invoice gives no second reward.
    await buy_from_balance(sandbox.billing, db, referred, plan_id)
    assert len(await entries(pg, referrer)) == 1
    assert len(await published(pg, "billing.referral.rewarded.v1", referred)) == 1


async def test_concurrent_watches_of_a_paid_invoice_reward_once(sandbox, db, pg):
    referrer = user()
    referred = await referred_by(db, referrer)
    invoice = await chain_invoice(sandbox.billing, db, referred, await new_plan(db, "9.99"))
    results = await asyncio.gather(*(sandbox.watcher.watch_one(invoice["id"]) for _ in range(6)))
    assert results == ["PAID"] * 6
    assert [e[:2] for e in await entries(pg, referrer)] == [("REFERRAL_REWARD", D("1.00"))]
    assert len(await published(pg, "billing.referral.rewarded.v1", referred)) == 1


async def test_a_referral_recorded_while_its_invoice_is_paid_is_rewarded_once(sandbox, db, pg):
    for _ in range(5):  # the two orders, and the race between them, each end the same
        referrer, referred = user(), user()
        code = await code_of(db, referrer)
        invoice = await chain_invoice(sandbox.billing, db, referred, await new_plan(db))
        await asyncio.gather(register(db, referred, code, times=1),
                             sandbox.watcher.watch_one(invoice["id"]))
        assert (await referral(pg, referred))["status"] == "REWARDED"
        assert [e[:2] for e in await entries(pg, referrer)] == [("REFERRAL_REWARD", D("1.00"))]


async def test_a_trial_a_top_up_and_a_free_invoice_give_no_reward(sandbox, db, pg):
    referrer = user()
    referred = await referred_by(db, referrer)
    await sandbox.billing.grant_trial(db, user_id=referred)
    await credit(db, referred, "5.00", kind="TOP_UP")
    plan_id = await new_plan(db, "4.00")
    free = f"F{uuid.uuid4().hex[:10]}"
    async with db.transaction() as s:
        await promos.create(s, PromoCodeCreate(code=free, kind="PERCENT", value="100"),
                            uuid.uuid4().hex, utcnow())
    await sandbox.billing.create_invoice_idempotent(
        db, user_id=referred, key=uuid.uuid4().hex,
        body=InvoiceCreate(plan_id=plan_id, asset="USDT", network="TRON", promo_code=free))
    assert (await referral(pg, referred))["status"] == "PENDING"
    assert await entries(pg, referrer) == []


async def test_days_mode_publishes_the_days_and_credits_nothing(db, pg):
    settings = make_settings(REFERRAL_REWARD_DAYS="7")
    parts = build_components(settings, db)
    try:
        referrer = user()
        referred = await referred_by(db, referrer, settings)
        invoice = await buy_from_balance(parts.billing, db, referred, await new_plan(db))
        [event] = await published(pg, "billing.referral.rewarded.v1", referred)
        assert (event["amount_usd"], event["days"], event["invoice_id"]) == ("0.00", 7,
                                                                             invoice["id"])
        assert await entries(pg, referrer) == []
        await refund(parts.billing, db, invoice["id"])
        [reversed_] = await published(pg, "billing.referral.reversed.v1", referred)
        assert (reversed_["days"], reversed_["amount_usd"]) == (7, "0.00")
        assert await entries(pg, referrer) == [] and await owed(pg, referrer) is None
    finally:
        await parts.close()


# ---- the reversal -------------------------------------------------------------------------------
async def test_a_refund_takes_the_reward_back_from_the_balance(sandbox, db, pg):
    referrer = user()
    referred = await referred_by(db, referrer)
    await credit(db, referrer, "3.00")
    invoice = await buy_from_balance(sandbox.billing, db, referred, await new_plan(db))
    await refund(sandbox.billing, db, invoice["id"])
    assert [e[:3] for e in await entries(pg, referrer)] == [
        ("ADJUSTMENT", D("3.00"), D("3.00")), ("REFERRAL_REWARD", D("1.00"), D("4.00")),
        ("ADJUSTMENT", D("-1.00"), D("3.00"))]
    assert await owed(pg, referrer) == D("0.00")
    row = await referral(pg, referred)
    assert row["status"] == "REVERSED" and row["reversed_at"] is not None
    assert len(await published(pg, "billing.referral.reversed.v1", referred)) == 1
    # The referred customer pays again: no new reward, the referral was used.
    await buy_from_balance(sandbox.billing, db, referred, await new_plan(db))
    assert len(await entries(pg, referrer)) == 3


async def test_what_the_balance_cannot_cover_is_owed_and_taken_from_the_next_credit(
        sandbox, db, pg):
    referrer = user()
    referred = await referred_by(db, referrer)
    invoice = await buy_from_balance(sandbox.billing, db, referred, await new_plan(db, "50.00"))
    await credit(db, referrer, "-3.50")  # the 5.00 reward is partly spent: 1.50 left
    await refund(sandbox.billing, db, invoice["id"])
    assert await owed(pg, referrer) == D("3.50")
    assert await balance(db, referrer) == D("0.00")

    first = await credit(db, referrer, "2.00")  # pays 2.00 of the debt, nothing left over
    assert first.debt_entry is not None and first.balance_usd == D("0.00")
    assert await owed(pg, referrer) == D("1.50")
    second = await credit(db, referrer, "4.00")  # pays the rest: 2.50 stays
    assert second.balance_usd == D("2.50") and await owed(pg, referrer) == D("0.00")
    third = await credit(db, referrer, "1.00")  # nothing owed: one entry
    assert third.debt_entry is None
    rows = await entries(pg, referrer)
    assert [e[:3] for e in rows] == [
        ("REFERRAL_REWARD", D("5.00"), D("5.00")), ("ADJUSTMENT", D("-3.50"), D("1.50")),
        ("ADJUSTMENT", D("-1.50"), D("0.00")),  # the reversal: what the balance held
        ("ADJUSTMENT", D("2.00"), D("2.00")), ("ADJUSTMENT", D("-2.00"), D("0.00")),
        ("ADJUSTMENT", D("4.00"), D("4.00")), ("ADJUSTMENT", D("-1.50"), D("2.50")),
        ("ADJUSTMENT", D("1.00"), D("3.50"))]
    assert rows[2][3] == f"referral:{referred}:reversal"
    assert rows[4][3].endswith(":debt") and rows[6][3].endswith(":debt")
    # A credit replayed under its key pays no debt twice.
    async with db.transaction() as s:
        again = await ledger.move(s, user_id=referrer, amount=D("4.00"), kind="ADJUSTMENT",
                                  key=rows[5][3])
    assert not again.applied and len(await entries(pg, referrer)) == 8


# ---- the internal API ---------------------------------------------------------------------------
@pytest.fixture
async def api(migrated):
    app = create_api(make_settings(APP_BASE_URL="https://vpn.example"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://billing") as client:
        yield client
    await app.state.db.dispose()


def as_(user_id: str) -> dict[str, str]:
    key = make_settings().internal_signing_key
    return {identity.HEADER: identity.sign(key, user_id, "USER", audience="billing")}


async def test_the_referrer_reads_code_link_counts_and_rewards(api, sandbox, db):
    referrer = user()
    first = await api.get("/internal/referrals", headers=as_(referrer))
    assert first.status_code == 200
    code = first.json()["code"]
    assert first.json() == {"code": code, "link": f"https://vpn.example/r/{code}", "invited": 0,
                            "paid": 0, "reward_total_usd": "0.00", "reward_total_days": 0}
    payer, waiting, refunded = [await referred_by(db, referrer) for _ in range(3)]
    await buy_from_balance(sandbox.billing, db, payer, await new_plan(db, "20.00"))
    gone = await buy_from_balance(sandbox.billing, db, refunded, await new_plan(db, "30.00"))
    await refund(sandbox.billing, db, gone["id"])
    body = (await api.get("/internal/referrals", headers=as_(referrer))).json()
    assert (body["code"], body["invited"], body["paid"], body["reward_total_usd"]) == (
        code, 3, 1, "2.00")  # `waiting` has not paid; `refunded`'s reward was taken back
    assert body["reward_total_days"] == 0 and waiting != payer
