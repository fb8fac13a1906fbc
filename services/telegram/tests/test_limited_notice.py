"""A used-up traffic allowance told to the customer in Telegram (`provisioning.subscription.
limited.v1`), against a real database, the notify queue in Redis and the Telegram emulator:
once per event however often it is delivered, with the date the allowance renews (or "until you
renew"), in the customer's language, and nothing to the `/status` projection."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from contracts import make_envelope
from contracts.provisioning import SubscriptionLimitedV1
from telegram import notifications
from telegram.models import BotUser, SubscriptionView
from telegram.shopapi import ShopApi

from .helpers import T0, Bot, link, next_forum

BASE = "https://vpn.example"


@pytest.fixture
async def bot(db, emulator):
    bot = Bot(db, emulator, next_forum())
    yield bot
    await bot.close()


def limited(user_id: str, resets_days: int | None = 10) -> SubscriptionLimitedV1:
    return SubscriptionLimitedV1(
        subscription_id=uuid.uuid4().hex, user_id=user_id, limited_at=T0,
        resets_at=T0 + timedelta(days=resets_days) if resets_days is not None else None,
        used_bytes=2**30, limit_bytes=2**30)


async def consume(db, jobs, event, env=None):
    env = env or make_envelope(event, producer="provisioner")
    api = ShopApi("http://127.0.0.1:9", "http://127.0.0.1:9", "unused")  # not called here
    await notifications.build_subscription(db, jobs, BASE, api).handlers[event.routing_key()](
        env, event)
    await api.close()
    return env


async def deliver_all(jobs, bot) -> None:
    for job in await jobs.notify.queue.getJobs(["waiting", "delayed"]):
        await bot.delivery.deliver_one(job.data["outgoing_id"])


async def test_the_limit_is_told_once_with_the_renewal_date(db, jobs, bot):
    user_id, tg_user = await link(db)
    event = limited(user_id)
    env = await consume(db, jobs, event)
    await consume(db, jobs, event, env)  # a redelivery
    await deliver_all(jobs, bot)
    (shown,) = await bot.shown(tg_user)
    until = (T0 + timedelta(days=10)).strftime("%Y-%m-%d")
    assert shown["text"] == ("📵 Your traffic allowance is used up: the VPN will not connect "
                             f"until it renews on {until}. Renew now for a fresh allowance.")
    buttons = [b for row in shown["reply_markup"]["inline_keyboard"] for b in row]
    assert any(b.get("url") == f"{BASE}/app/buy" for b in buttons)
    async with db.transaction() as s:
        assert await s.get(SubscriptionView, user_id) is None  # still running: no change


async def test_in_russian_for_a_russian_customer_and_until_renewal_without_a_date(db, jobs,
                                                                                 bot):
    user_id, tg_user = await link(db)
    async with db.transaction() as s:
        s.add(BotUser(telegram_user_id=tg_user, chat_id=tg_user, language_code="ru"))
    await consume(db, jobs, limited(user_id, resets_days=None))
    await deliver_all(jobs, bot)
    (shown,) = await bot.shown(tg_user)
    assert shown["text"] == ("📵 Трафик по тарифу исчерпан: VPN не подключится, пока вы не "
                             "продлите тариф.")


async def test_an_unlinked_customer_is_told_nothing(db, jobs):
    await consume(db, jobs, limited(uuid.uuid4().hex))
    assert await jobs.notify.queue.getJobs(["waiting", "delayed"]) == []
