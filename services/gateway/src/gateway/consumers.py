"""Events the gateway consumes: Telegram account links (shown in `GET /auth/me`)."""

from __future__ import annotations

from contracts import Envelope
from contracts.telegram import AccountLinkedV1
from gateway.models import inbox
from gateway.repository import UserRepository
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
            await UserRepository(s).link_telegram(event.user_id, event.telegram_username)

    return sub
