"""Events the telegram service consumes: ticket events, turned into support-chat messages, and
identity block events, kept as the `user_blocks` projection."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from contracts import Envelope
from contracts.identity import UserBlockedV1, UserUnblockedV1
from contracts.tickets import (
    MessageAddedV1,
    NoteAddedV1,
    TicketAssignedV1,
    TicketClosedV1,
    TicketOpenedV1,
    TicketStatusChangedV1,
)
from runtime.broker import Subscription
from runtime.db import Database
from telegram.jobs import TelegramJobs
from telegram.models import inbox
from telegram.repository import TelegramRepository
from telegram.service import MirrorService

QUEUE = "telegram.ticket-events"
IDENTITY_QUEUE = "telegram.identity-events"


def build_subscription(db: Database, mirror: MirrorService, jobs: TelegramJobs) -> Subscription:
    sub = Subscription(QUEUE, db=db, inbox=inbox,
                       description="Ticket events, mirrored into each ticket's support topic.")

    async def on_ticket_event(env: Envelope, event) -> None:
        async with db.transaction() as s:
            if await sub.claim(s, env):
                ids = await mirror.record_ticket_event(s, env, event)
            else:  # duplicate: make sure its work was queued (a crash may have lost the job)
                ids = [r.id for r in await TelegramRepository(s).pending_for_event(
                    str(env.event_id))]
        # Only after commit: the job must never run before its rows exist.
        await jobs.enqueue_outgoing([(i, event.ticket_id) for i in ids])

    for contract in (TicketOpenedV1, MessageAddedV1, TicketStatusChangedV1, TicketClosedV1,
                     NoteAddedV1, TicketAssignedV1):
        sub.on(contract)(on_ticket_event)
    return sub


def build_identity_subscription(db: Database) -> Subscription:
    sub = Subscription(IDENTITY_QUEUE, db=db, inbox=inbox,
                       description="Blocked and unblocked users, kept as `user_blocks`.")

    @sub.once(UserBlockedV1)
    async def on_blocked(s: AsyncSession, env: Envelope, event: UserBlockedV1) -> None:
        await TelegramRepository(s).record_block(event.user_id, True, event.blocked_at)

    @sub.once(UserUnblockedV1)
    async def on_unblocked(s: AsyncSession, env: Envelope, event: UserUnblockedV1) -> None:
        await TelegramRepository(s).record_block(event.user_id, False, event.unblocked_at)

    return sub
