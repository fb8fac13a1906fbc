"""Events the telegram service consumes: ticket events, turned into support-chat messages, and
identity events, kept as the `user_blocks` and `customer_view` projections. Both make the
customer's cards due (telegram.card): open tickets and the account are on them."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from contracts import Envelope
from contracts.identity import (
    UserBlockedV1,
    UserRegisteredV1,
    UserRoleChangedV1,
    UserUnblockedV1,
)
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
from telegram.card import touch
from telegram.jobs import TelegramJobs
from telegram.models import CustomerView, inbox
from telegram.repository import TelegramRepository
from telegram.service import MirrorService

QUEUE = "telegram.ticket-events"
IDENTITY_QUEUE = "telegram.identity-events"


def build_subscription(db: Database, mirror: MirrorService, jobs: TelegramJobs) -> Subscription:
    sub = Subscription(QUEUE, db=db, inbox=inbox,
                       description="Ticket events, mirrored into each ticket's support topic.")

    async def on_ticket_event(env: Envelope, event) -> None:
        dues = []
        async with db.transaction() as s:
            if await sub.claim(s, env):
                ids = await mirror.record_ticket_event(s, env, event)
                if isinstance(event, TicketOpenedV1 | TicketClosedV1):  # the open tickets
                    dues = await touch(s, event.user_id, jobs.card_delay)
            else:  # duplicate: make sure its work was queued (a crash may have lost the job)
                ids = [r.id for r in await TelegramRepository(s).pending_for_event(
                    str(env.event_id))]
        # Only after commit: the job must never run before its rows exist. One job delivers
        # every pending row of the ticket, in order.
        await jobs.enqueue_outgoing([(i, event.ticket_id) for i in ids[:1]])
        await jobs.enqueue_cards(dues)

    for contract in (TicketOpenedV1, MessageAddedV1, TicketStatusChangedV1, TicketClosedV1,
                     NoteAddedV1, TicketAssignedV1):
        sub.on(contract)(on_ticket_event)
    return sub


def build_identity_subscription(db: Database, jobs: TelegramJobs | None = None
                                ) -> Subscription:
    sub = Subscription(IDENTITY_QUEUE, db=db, inbox=inbox,
                       description="Blocked and unblocked users, kept as `user_blocks`, and "
                                   "the accounts registered (email, since) and their roles, as "
                                   "`customer_view`.")

    @sub.on(UserRegisteredV1)
    async def on_registered(env: Envelope, event: UserRegisteredV1) -> None:
        dues = []
        async with db.transaction() as s:
            if not await sub.claim(s, env):
                return
            values = {"email": event.email or None, "registered_at": event.registered_at}
            await s.execute(insert(CustomerView).values(user_id=event.user_id,
                                                        role=event.role, **values)
                            .on_conflict_do_update(index_elements=[CustomerView.user_id],
                                                   set_=values))
            if jobs is not None:
                dues = await touch(s, event.user_id, jobs.card_delay)
        if jobs is not None:
            await jobs.enqueue_cards(dues)

    @sub.once(UserRoleChangedV1)
    async def on_role(s: AsyncSession, env: Envelope, event: UserRoleChangedV1) -> None:
        """The newest change wins, whatever order the events come in."""
        values = {"role": event.role, "role_changed_at": event.changed_at}
        await s.execute(insert(CustomerView).values(user_id=event.user_id, **values)
                        .on_conflict_do_update(
                            index_elements=[CustomerView.user_id], set_=values,
                            where=sa.or_(CustomerView.role_changed_at.is_(None),
                                         CustomerView.role_changed_at <= event.changed_at)))

    @sub.once(UserBlockedV1)
    async def on_blocked(s: AsyncSession, env: Envelope, event: UserBlockedV1) -> None:
        await TelegramRepository(s).record_block(event.user_id, True, event.blocked_at)

    @sub.once(UserUnblockedV1)
    async def on_unblocked(s: AsyncSession, env: Envelope, event: UserUnblockedV1) -> None:
        await TelegramRepository(s).record_block(event.user_id, False, event.unblocked_at)

    return sub
