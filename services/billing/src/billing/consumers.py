"""Events billing consumes: Telegram account links, kept as `telegram_links` (which Telegram
account each customer linked: a trial is once per person, across accounts)."""

from __future__ import annotations

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing.models import TelegramLink, inbox
from contracts import Envelope
from contracts.telegram import AccountLinkedV1
from runtime.broker import Subscription
from runtime.db import Database

QUEUE = "billing.telegram-links"


def build_subscription(db: Database) -> Subscription:
    sub = Subscription(QUEUE, db=db, inbox=inbox,
                       description="Telegram account links, for the once-per-person trial.")

    @sub.once(AccountLinkedV1)
    async def on_linked(s: AsyncSession, env: Envelope, event: AccountLinkedV1) -> None:
        values = {"telegram_user_id": event.telegram_user_id, "linked_at": event.linked_at}
        await s.execute(insert(TelegramLink).values(user_id=event.user_id, **values)
                        .on_conflict_do_update(index_elements=[TelegramLink.user_id],
                                               set_=values))

    return sub
