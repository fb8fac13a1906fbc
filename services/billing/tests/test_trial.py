"""The free trial against a real database: granted once through the paid path, never twice to
one account (also when asked twice at once), nor to an account whose linked Telegram account
had one elsewhere, nor after a paid plan; and a Telegram link projected once per event."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from billing.consumers import build_subscription
from billing.exceptions import TrialUnavailable
from billing.schemas import InvoiceCreate, PlanCreate
from billing.service import ledger, plan_service
from billing.wiring import build_components
from contracts import make_envelope
from contracts.telegram import AccountLinkedV1

from .conftest import make_settings


def user() -> str:
    return f"u-{uuid.uuid4().hex[:12]}"


async def link(db, user_id: str, telegram_id: int) -> None:
    event = AccountLinkedV1(user_id=user_id, telegram_user_id=telegram_id,
                            telegram_username="someone", linked_at=datetime.now(UTC))
    handle = build_subscription(db).handlers[AccountLinkedV1.routing_key()]
    env = make_envelope(event, producer="telegram")
    await handle(env, event)
    await handle(env, event)  # a redelivery changes nothing


async def paid_plans(pg, invoice_id: str) -> list[dict]:
    rows = await pg.fetch("SELECT envelope FROM billing.outbox WHERE routing_key = "
                          "'billing.invoice.paid.v1' AND envelope->'payload'->>'invoice_id' = $1",
                          invoice_id)
    return [json.loads(r["envelope"])["payload"]["plan"] for r in rows]


async def test_a_trial_is_granted_once_through_the_paid_path(sandbox, db, pg):
    u = user()
    invoice = await sandbox.billing.grant_trial(db, user_id=u)
    assert (invoice["kind"], invoice["status"], invoice["amount_usd"]) == ("TRIAL", "PAID", "0.00")
    settings = make_settings()
    assert await paid_plans(pg, invoice["id"]) == [{
        "plan_id": "trial", "name": "Trial", "duration_days": settings.trial_days,
        "max_devices": settings.trial_max_devices, "price_usd": "0.00",
        "traffic_limit_gb": None, "traffic_reset": "NONE"}]
    with pytest.raises(TrialUnavailable):
        await sandbox.billing.grant_trial(db, user_id=u)


async def test_two_trials_asked_at_once_give_one(sandbox, db, pg):
    u = user()
    results = await asyncio.gather(*(sandbox.billing.grant_trial(db, user_id=u)
                                     for _ in range(5)), return_exceptions=True)
    assert sum(isinstance(r, dict) for r in results) == 1
    assert all(isinstance(r, TrialUnavailable) for r in results if not isinstance(r, dict))
    assert await pg.fetchval("SELECT count(*) FROM billing.invoices WHERE user_id = $1", u) == 1


async def test_a_telegram_account_that_had_a_trial_gives_no_second_one(sandbox, db, pg):
    first, second, telegram_id = user(), user(), 7_000_000_000 + uuid.uuid4().int % 10**6
    await link(db, first, telegram_id)
    await sandbox.billing.grant_trial(db, user_id=first)
    await link(db, second, telegram_id)  # the same person, a new account, the same Telegram
    with pytest.raises(TrialUnavailable):
        await sandbox.billing.grant_trial(db, user_id=second)
    assert await pg.fetchval("SELECT count(*) FROM billing.telegram_links WHERE "
                             "telegram_user_id = $1", telegram_id) == 2


async def test_no_trial_after_a_paid_plan(sandbox, db, pg):
    u = user()
    async with db.transaction() as s:
        plan = await plan_service.create(s, PlanCreate(
            name=f"plan-{uuid.uuid4().hex[:10]}", price_usd="1.00", duration_days=30,
            max_devices=1))
        await ledger.move(s, user_id=u, amount=Decimal("1.00"),
                          kind="TOP_UP", key=uuid.uuid4().hex)
    await sandbox.billing.create_invoice_idempotent(
        db, user_id=u, key=uuid.uuid4().hex,
        body=InvoiceCreate(plan_id=plan.id, asset="USDT", network="TRON", pay_with="balance"))
    with pytest.raises(TrialUnavailable):
        await sandbox.billing.grant_trial(db, user_id=u)


async def test_a_trials_traffic_allowance_travels_with_its_grant(db, pg):
    parts = build_components(make_settings(TRIAL_TRAFFIC_GB="5"), db)
    try:
        invoice = await parts.billing.grant_trial(db, user_id=user())
    finally:
        await parts.close()
    [plan] = await paid_plans(pg, invoice["id"])
    assert plan["traffic_limit_gb"] == 5


async def test_no_trial_when_it_is_switched_off(db):
    parts = build_components(make_settings(TRIAL_ENABLED="false"), db)
    try:
        with pytest.raises(TrialUnavailable):
            await parts.billing.grant_trial(db, user_id=user())
    finally:
        await parts.close()
