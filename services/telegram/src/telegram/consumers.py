"""Events the telegram service consumes: ticket events, turned into support-chat messages, and
identity block events, kept as the `user_blocks` projection."""

from __future__ import annotations

from contracts import Envelope
from contracts.identity import UserBlockedV1, UserUnblockedV1
from contracts.tickets import (
    MessageAddedV1,
    TicketClosedV1,
    TicketOpenedV1,
    TicketStatusChangedV1,
)
from runtime.broker import Subscription
from runtime.db import Database
from runtime.inbox import claim
from telegram.jobs import TelegramJobs
from telegram.models import inbox
from telegram.repository import TelegramRepository
from telegram.service import MirrorService

QUEUE = "telegram.ticket-events"
IDENTITY_QUEUE = "telegram.identity-events"


def build_subscription(db: Database, mirror: MirrorService, jobs: TelegramJobs) -> Subscription:
    sub = Subscription(QUEUE)

    async def on_ticket_event(env: Envelope, event) -> None:
        async with db.transaction() as s:
            fresh = await claim(s, inbox, env.event_id, QUEUE, env.routing_key)
            if fresh:
                ids = await mirror.record_ticket_event(s, env, event)
            else:  # duplicate: make sure its work was queued (a crash may have lost the job)
                ids = [r.id for r in await TelegramRepository(s).pending_for_event(
                    str(env.event_id))]
        # Only after commit: the job must never run before its rows exist.
        await jobs.enqueue_outgoing([(i, event.ticket_id) for i in ids])

    for contract in (TicketOpenedV1, MessageAddedV1, TicketStatusChangedV1, TicketClosedV1):
        sub.on(contract)(on_ticket_event)
    return sub


def build_identity_subscription(db: Database) -> Subscription:
    sub = Subscription(IDENTITY_QUEUE)

    async def record(env: Envelope, user_id: str, blocked: bool, changed_at) -> None:
        async with db.transaction() as s:
            if await claim(s, inbox, env.event_id, IDENTITY_QUEUE, env.routing_key):
                await TelegramRepository(s).record_block(user_id, blocked, changed_at)

    @sub.on(UserBlockedV1)
    async def on_blocked(env: Envelope, event: UserBlockedV1) -> None:
        await record(env, event.user_id, True, event.blocked_at)

    @sub.on(UserUnblockedV1)
    async def on_unblocked(env: Envelope, event: UserUnblockedV1) -> None:
        await record(env, event.user_id, False, event.unblocked_at)

    return sub
