"""The telegram service's consumers against a real database and the notify queue in Redis:
ticket events become support-chat messages queued for delivery only once recorded, a
redelivered event re-queues work a crash may have lost, and block events from identity decide
whether a customer can still write to support."""

from __future__ import annotations

from datetime import timedelta

import pytest

from contracts import make_envelope
from contracts.identity import UserBlockedV1, UserUnblockedV1
from telegram.consumers import build_identity_subscription, build_subscription
from telegram.service import BLOCKED_TEXT

from .helpers import T0, Bot, Story, link, next_forum, private_message


@pytest.fixture
async def bot(db, emulator):
    bot = Bot(db, emulator, next_forum())
    yield bot
    await bot.close()


async def consume(bot, jobs, event, env=None):
    """The event as the broker hands it to the `telegram.ticket-events` consumer."""
    env = env or make_envelope(event, producer="tickets")
    await build_subscription(bot.db, bot.mirror, jobs).handlers[event.routing_key()](env, event)
    return env


async def queued(jobs) -> list[tuple[str, str, dict]]:
    found = await jobs.notify.queue.getJobs(["waiting", "delayed"])
    return sorted((job.id, job.name, {k: v for k, v in job.data.items() if not k.startswith("_")})
                  for job in found)


async def test_a_ticket_event_is_queued_for_delivery_of_its_ticket(db, jobs, bot):
    story = Story()
    await consume(bot, jobs, story.opened())
    [(jid, name, data)] = await queued(jobs)
    assert (name, data) == ("deliver_ticket", {"ticket_id": story.id})
    assert jid.startswith("notify-")
    assert await bot.delivery.deliver_ticket(story.id) == 2  # the opening and the card
    assert (await bot.shown())[0]["text"].startswith("🆕 New ticket: VPN is slow")


async def test_a_redelivered_event_requeues_work_whose_job_was_lost(db, jobs, bot):
    story = Story()
    env = await consume(bot, jobs, story.opened())
    [(jid, _, _)] = await queued(jobs)
    await jobs.notify.queue.obliterate(force=True)  # the job is gone (a crash before enqueue)
    await consume(bot, jobs, story.opened(), env)
    assert [j[0] for j in await queued(jobs)] == [jid]
    await bot.delivery.deliver_ticket(story.id)
    await jobs.notify.queue.obliterate(force=True)
    await consume(bot, jobs, story.opened(), env)  # delivered by now: nothing to queue
    assert await queued(jobs) == []
    assert len(await bot.shown()) == 2  # the opening and the card, once


async def test_the_same_event_queues_one_job(db, jobs, bot):
    story = Story()
    env = await consume(bot, jobs, story.opened())
    await consume(bot, jobs, story.opened(), env)
    assert len(await queued(jobs)) == 1
    await bot.delivery.deliver_ticket(story.id)
    assert len(await bot.shown()) == 2  # the opening and the card


async def identity_event(db, event) -> None:
    env = make_envelope(event, producer="gateway")
    await build_identity_subscription(db).handlers[event.routing_key()](env, event)


async def test_a_blocked_customer_cannot_write_to_support_until_unblocked(db, bot):
    user_id, tg_user = await link(db)
    await identity_event(db, UserBlockedV1(user_id=user_id, blocked_at=T0, reason="abuse"))
    assert await bot.answer(private_message(tg_user, "let me in")) == ("blocked", [BLOCKED_TEXT])
    # an unblock older than the block (arriving late) changes nothing
    await identity_event(db, UserUnblockedV1(user_id=user_id,
                                             unblocked_at=T0 - timedelta(minutes=1)))
    assert (await bot.answer(private_message(tg_user, "please")))[0] == "blocked"
    await identity_event(db, UserUnblockedV1(user_id=user_id,
                                             unblocked_at=T0 + timedelta(minutes=1)))
    assert (await bot.answer(private_message(tg_user, "thanks")))[0] == "user_message"
