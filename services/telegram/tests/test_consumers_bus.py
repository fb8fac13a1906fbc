"""The telegram worker's three consumers on FastStream's in-memory broker (the worker's
subscribers, filters and `Delivery` middleware; the database and the notify queue in Redis
real, no RabbitMQ): every contract they take is applied once per event, and one its contract
refuses is rejected before any handler."""

from __future__ import annotations

from datetime import timedelta

import pytest

from contracts import make_envelope
from contracts.billing import RenewalReminderV1
from contracts.identity import UserBlockedV1, UserUnblockedV1
from contracts.provisioning import (
    SubscriptionActivatedV1,
    SubscriptionExpiredV1,
    SubscriptionExpiringV1,
    SubscriptionExtendedV1,
    SubscriptionResumedV1,
    SubscriptionSuspendedV1,
)
from runtime.metrics import MESSAGES_HANDLED
from runtime.testing import in_memory_bus
from telegram import notifications
from telegram.consumers import build_identity_subscription, build_subscription
from telegram.service import MirrorService
from telegram.shopapi import ShopApi

from .conftest import make_settings
from .helpers import T0, Story, link

UNTIL = T0 + timedelta(days=30)

# contract: (its event for a linked user, what applying it writes, the notify jobs it queues)
CASES = {
    "ticket opened": (lambda u: Story(user_id=u).opened(), ["ticket_opened", "topic_card"],
                      ["deliver_ticket"]),
    "message added": (lambda u: Story(user_id=u).message("Still slow")[0], ["ticket_message"],
                      ["deliver_ticket"]),
    "status changed": (lambda u: Story(user_id=u).closed()[0], ["topic_title"], ["deliver_ticket"]),
    "ticket closed": (lambda u: Story(user_id=u).closed()[1], ["ticket_closed"],
                      ["deliver_ticket"]),
    "activated": (lambda u: SubscriptionActivatedV1(
        subscription_id="s1", user_id=u, plan_id="p1", invoice_id="i1", started_at=T0,
        expires_at=UNTIL, max_devices=2), ["shop:0:sendMessage", "ACTIVE"], ["deliver_one"]),
    "extended": (lambda u: SubscriptionExtendedV1(
        subscription_id="s1", user_id=u, invoice_id="i2", previous_expires_at=T0,
        expires_at=UNTIL, days_added=30, reason="RENEWAL"), ["shop:0:sendMessage", "ACTIVE"],
        ["deliver_one"]),
    "expiring": (lambda u: SubscriptionExpiringV1(
        subscription_id="s1", user_id=u, expires_at=UNTIL, days_left=3), [], []),
    "renewal reminder": (lambda u: RenewalReminderV1(
        subscription_id="s1", user_id=u, expires_at=UNTIL, days_left=3, plan_id="p1",
        price_usd="5.00", balance_usd="0.00", auto_renew=False,
        pay_url="https://vpn.example/app/buy/p1"), ["shop:0:sendMessage"], ["deliver_one"]),
    "expired": (lambda u: SubscriptionExpiredV1(subscription_id="s1", user_id=u,
                                                expired_at=UNTIL),
                ["shop:0:sendMessage", "EXPIRED"], ["deliver_one"]),
    "suspended": (lambda u: SubscriptionSuspendedV1(subscription_id="s1", user_id=u,
                                                    reason="ADMIN", suspended_at=T0),
                  ["shop:0:sendMessage", "SUSPENDED"], ["deliver_one"]),
    "resumed": (lambda u: SubscriptionResumedV1(subscription_id="s1", user_id=u,
                                                expires_at=UNTIL, resumed_at=T0),
                ["shop:0:sendMessage", "ACTIVE"], ["deliver_one"]),
    "blocked": (lambda u: UserBlockedV1(user_id=u, blocked_at=T0), ["blocked"], []),
    "unblocked": (lambda u: UserUnblockedV1(user_id=u, unblocked_at=T0), ["unblocked"], []),
}
NAMES = list(CASES)


@pytest.fixture
async def bus(db, jobs):
    """The consumers as worker.py builds them, on the conftest's notify queue (billing and the
    provisioner are not called by these events)."""
    api = ShopApi("http://127.0.0.1:9", "http://127.0.0.1:9", "unused")
    async with in_memory_bus(build_subscription(db, MirrorService(make_settings()), jobs),
                             notifications.build_subscription(db, jobs, "https://vpn.example",
                                                              api),
                             build_identity_subscription(db)) as bus:
        yield bus
    await api.close()


async def effect(pg, env) -> list[str]:
    """What the event wrote: its outgoing messages, the user's `/status` and block state."""
    user_id = env.payload.get("user_id")
    kinds = [r["kind"] for r in await pg.fetch(
        "SELECT kind FROM telegram.outgoing WHERE event_id = $1 ORDER BY id", str(env.event_id))]
    status = await pg.fetchval("SELECT status FROM telegram.subscription_view WHERE user_id = $1",
                               user_id)
    blocked = await pg.fetchval("SELECT blocked FROM telegram.user_blocks WHERE user_id = $1",
                                user_id)
    return kinds + [status] * (status is not None) + (
        [] if blocked is None else ["blocked" if blocked else "unblocked"])


async def inboxed(pg, env) -> int:
    return await pg.fetchval("SELECT count(*) FROM telegram.inbox WHERE event_id = $1",
                             env.event_id)


async def queued(jobs) -> list[str]:
    return sorted(job.name for job in await jobs.notify.queue.getJobs(["waiting", "delayed"]))


@pytest.mark.parametrize("name", NAMES)
async def test_a_published_event_is_applied_once(db, pg, jobs, bus, name):
    make, writes, queues = CASES[name]
    user_id, _ = await link(db)
    env = make_envelope(make(user_id), producer="test")
    await bus.publish(env)
    assert await effect(pg, env) == writes
    assert await queued(jobs) == queues
    # redelivered after what it wrote went: the inbox has the event, nothing is written again
    await pg.execute("DELETE FROM telegram.outgoing WHERE event_id = $1", str(env.event_id))
    await pg.execute("DELETE FROM telegram.subscription_view WHERE user_id = $1", user_id)
    await pg.execute("DELETE FROM telegram.user_blocks WHERE user_id = $1", user_id)
    await bus.publish(env)
    assert await effect(pg, env) == []
    assert await inboxed(pg, env) == 1


@pytest.mark.parametrize("name", NAMES)
async def test_an_event_its_contract_refuses_is_rejected(db, pg, jobs, bus, name):
    user_id, _ = await link(db)
    env = make_envelope(CASES[name][0](user_id), producer="test")
    body = env.model_dump(mode="json")
    del body["payload"]["user_id"]
    [queue] = [s.queue for s in bus.broker.subscriptions if env.routing_key in s.handlers]
    rejected = MESSAGES_HANDLED.labels(queue, env.routing_key, "rejected")
    before = rejected._value.get()
    await bus.publish_raw(env.routing_key, body)
    assert rejected._value.get() == before + 1
    assert await effect(pg, env) == []
    assert await queued(jobs) == []
    assert await inboxed(pg, env) == 0
