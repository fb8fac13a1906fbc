"""Subscription events told to the customer in Telegram, against a real database, the notify
queue in Redis and the Telegram emulator: what each event says, who gets it (linked customers
only, once per event), the `/status` projection, and the notify job delivering it."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa

from contracts import make_envelope
from contracts.billing import RenewalReminderV1
from contracts.provisioning import (
    SubscriptionActivatedV1,
    SubscriptionExpiredV1,
    SubscriptionExpiringV1,
    SubscriptionExtendedV1,
    SubscriptionResumedV1,
    SubscriptionSuspendedV1,
)
from runtime.jobs import JobWorker
from telegram import notifications
from telegram.jobs import NOTIFY, notify_handlers
from telegram.models import Outgoing, SubscriptionView
from telegram.shopapi import ShopApi

from .helpers import T0, Bot, link, next_forum, private_message

UNTIL = T0 + timedelta(days=30)
BASE = "https://vpn.example"


@pytest.fixture
async def bot(db, emulator):
    bot = Bot(db, emulator, next_forum())
    yield bot
    await bot.close()


def activated(user_id: str) -> SubscriptionActivatedV1:
    return SubscriptionActivatedV1(subscription_id="s1", user_id=user_id, plan_id="p1",
                                   invoice_id="i1", started_at=T0, expires_at=UNTIL,
                                   max_devices=2)


EVENTS = {
    "activated": (activated, "ACTIVE", "✅ Your VPN subscription is active until 2026-03-31."),
    "extended": (lambda u: SubscriptionExtendedV1(
        subscription_id="s1", user_id=u, invoice_id="i2", previous_expires_at=T0,
        expires_at=UNTIL, days_added=30, reason="RENEWAL"),
        "ACTIVE", "➕ Your subscription now runs until 2026-03-31."),
    "reminder, 7 days, auto-renewal off": (lambda u: RenewalReminderV1(
        subscription_id="s1", user_id=u, expires_at=UNTIL, days_left=7, plan_id="p1",
        price_usd="5.00", balance_usd="0.00", auto_renew=False,
        pay_url=f"{BASE}/app/buy/p1"), None,
        "⏳ Your subscription ends in 7 days (2026-03-31)."),
    "reminder, 1 day, balance short": (lambda u: RenewalReminderV1(
        subscription_id="s1", user_id=u, expires_at=UNTIL, days_left=1, plan_id="p1",
        price_usd="5.00", balance_usd="2.5", auto_renew=True, invoice_id="i9",
        pay_url=f"{BASE}/app/invoices/i9"), None,
        "⏳ Your subscription ends in 1 day (2026-03-31).\nAuto-renewal needs $5.00 and your "
        "balance holds $2.50: top up, or renew here."),
    "expired": (lambda u: SubscriptionExpiredV1(subscription_id="s1", user_id=u,
                                                expired_at=UNTIL),
                "EXPIRED", "⌛ Your subscription has expired."),
    "suspended": (lambda u: SubscriptionSuspendedV1(subscription_id="s1", user_id=u,
                                                    reason="ADMIN", suspended_at=T0),
                  "SUSPENDED",
                  "⏸ Your subscription is suspended. Contact support if this is unexpected."),
    "resumed": (lambda u: SubscriptionResumedV1(subscription_id="s1", user_id=u,
                                                expires_at=UNTIL, resumed_at=T0),
                "ACTIVE", "▶️ Your subscription is active again until 2026-03-31."),
}


async def consume(db, jobs, event, env=None):
    """The event as the broker hands it to the `telegram.notifications` consumer."""
    env = env or make_envelope(event, producer="provisioner")
    api = ShopApi("http://127.0.0.1:9", "http://127.0.0.1:9", "unused")  # not called here
    await notifications.build_subscription(db, jobs, BASE, api).handlers[event.routing_key()](
        env, event)
    await api.close()
    return env


async def queued(jobs) -> list[tuple[str, dict]]:
    found = await jobs.notify.queue.getJobs(["waiting", "delayed"])
    return sorted((job.name, {k: v for k, v in job.data.items() if not k.startswith("_")})
                  for job in found)


async def view(db, user_id: str) -> SubscriptionView | None:
    async with db.transaction() as s:
        return await s.get(SubscriptionView, user_id)


@pytest.mark.parametrize("name", list(EVENTS))
async def test_each_subscription_event_tells_the_linked_customer(db, jobs, bot, name):
    make, status, text = EVENTS[name]
    user_id, tg_user = await link(db)
    await consume(db, jobs, make(user_id))
    [(job, data)] = await queued(jobs)
    assert job == "deliver_one"
    await bot.delivery.deliver_one(data["outgoing_id"])  # what the notify job does
    assert [m["text"] for m in await bot.shown(tg_user)] == [text]
    projected = await view(db, user_id)
    assert (projected.status if projected else None) == status


async def test_an_unlinked_customer_gets_no_message_but_status_knows_the_subscription(
        db, jobs, bot):
    user_id = uuid.uuid4().hex
    await consume(db, jobs, activated(user_id))
    assert await queued(jobs) == []
    _, tg_user = await link(db, user_id)  # linking later: /status already knows
    assert await bot.answer(private_message(tg_user, "/status")) == (
        "status", ["Subscription: active until 2026-03-31."])


async def test_status_follows_the_latest_event(db, jobs, bot):
    user_id, tg_user = await link(db)
    await consume(db, jobs, activated(user_id))
    await consume(db, jobs, EVENTS["reminder, 7 days, auto-renewal off"][0](user_id))  # warns
    # the notices not yet delivered go first: a chat's messages keep their order
    assert (await bot.answer(private_message(tg_user, "/status")))[1] == [
        "✅ Your VPN subscription is active until 2026-03-31.",
        "⏳ Your subscription ends in 7 days (2026-03-31).",
        "Subscription: active until 2026-03-31."]
    await consume(db, jobs, EVENTS["suspended"][0](user_id))
    assert (await bot.answer(private_message(tg_user, "/status")))[1][-1] == (
        "Subscription: suspended.")


async def test_the_provisioners_expiring_event_tells_nothing(db, jobs, bot):
    """Billing's reminder says it, and only when auto-renewal will not pay."""
    user_id, _ = await link(db)
    await consume(db, jobs, SubscriptionExpiringV1(subscription_id="s1", user_id=user_id,
                                                   expires_at=UNTIL, days_left=3,
                                                   auto_renew=True))
    assert await queued(jobs) == []


async def test_a_redelivered_event_is_told_once(db, jobs, bot):
    user_id, tg_user = await link(db)
    env = await consume(db, jobs, activated(user_id))
    event = activated(user_id)
    await consume(db, jobs, event, env)
    [(_, data)] = await queued(jobs)
    async with db.transaction() as s:
        rows = (await s.execute(sa.select(Outgoing.id)
                                .where(Outgoing.event_id == str(env.event_id)))).scalars()
        assert list(rows) == [data["outgoing_id"]]
    await bot.delivery.deliver_one(data["outgoing_id"])
    assert len(await bot.shown(tg_user)) == 1


async def test_a_customer_who_blocked_the_bot_is_given_up_on(db, jobs, bot):
    user_id, tg_user = await link(db)
    await consume(db, jobs, activated(user_id))
    [(_, data)] = await queued(jobs)
    await bot.fault(403, "Forbidden: bot was blocked by the user")
    await bot.delivery.deliver_one(data["outgoing_id"])  # no error: nothing to retry
    async with db.transaction() as s:
        row = await s.get(Outgoing, data["outgoing_id"])
        assert (row.status, row.last_error) == ("FAILED",
                                                "Forbidden: bot was blocked by the user")
    await bot.delivery.deliver_one(data["outgoing_id"])  # a retry sends nothing
    assert await bot.shown(tg_user) == []


async def test_the_notify_worker_delivers_the_notice(db, jobs, bot):
    user_id, tg_user = await link(db)
    worker = JobWorker(NOTIFY, bot.settings.redis_url, notify_handlers(bot.delivery, 0),
                       prefix=jobs.notify.queue.prefix)
    worker.start()
    try:
        await consume(db, jobs, activated(user_id))
        deadline = time.monotonic() + 20
        while not await bot.shown(tg_user):
            assert time.monotonic() < deadline, "the notice was not delivered"
            await asyncio.sleep(0.05)
    finally:
        await worker.close()
    assert [m["text"] for m in await bot.shown(tg_user)] == [EVENTS["activated"][2]]
