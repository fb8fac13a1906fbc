"""Events the gateway consumes: Telegram account links (shown in `GET /auth/me`)."""

from __future__ import annotations

import sqlalchemy as sa

from contracts import Envelope
from contracts.telegram import AccountLinkedV1
from gateway.models import User, inbox
from runtime.broker import Subscription
from runtime.db import Database
from runtime.inbox import claim

QUEUE = "gateway.identity-projections"


def build_subscription(db: Database) -> Subscription:
    sub = Subscription(QUEUE)

    @sub.on(AccountLinkedV1)
    async def on_linked(env: Envelope, event: AccountLinkedV1) -> None:
        async with db.transaction() as s:
            if not await claim(s, inbox, env.event_id, QUEUE, env.routing_key):
                return
            await s.execute(sa.update(User).where(User.id == event.user_id).values(
                telegram_linked=True, telegram_username=event.telegram_username))

    return sub
