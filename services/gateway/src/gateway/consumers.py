"""Events the gateway consumes: Telegram account links (shown in `GET /auth/me`) and accounts
made from Telegram."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from contracts import Envelope
from contracts.telegram import AccountCreatedV1, AccountLinkedV1
from gateway.models import inbox
from gateway.repository import UserRepository
from gateway.service import telegram_account_created
from runtime.broker import Subscription
from runtime.db import Database

QUEUE = "gateway.identity-projections"


def build_subscription(db: Database) -> Subscription:
    sub = Subscription(QUEUE, db=db, inbox=inbox,
                       description="Telegram account links, projected onto the user, and "
                                   "accounts made from Telegram.")

    @sub.once(AccountLinkedV1)
    async def on_linked(s: AsyncSession, env: Envelope, event: AccountLinkedV1) -> None:
        await UserRepository(s).link_telegram(event.user_id, event.telegram_username,
                                              event.telegram_user_id)

    @sub.once(AccountCreatedV1)
    async def on_created(s: AsyncSession, env: Envelope, event: AccountCreatedV1) -> None:
        await telegram_account_created(s, event)

    return sub
