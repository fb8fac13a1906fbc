"""Queries on the telegram schema."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from runtime.db import Database
from telegram.models import (
    AccountLink,
    BotUser,
    MessageMap,
    Outgoing,
    ReceivedUpdate,
    ShopInvoice,
    TicketThread,
    UserBlock,
)

CHANNEL = "telegram_updates"  # NOTIFY channel that wakes the worker's update pump


class UpdateInbox:
    """The webhook's one statement: store an update once, keyed by `update_id`, and wake the
    update pump (the NOTIFY is delivered at commit; a single statement commits on its own, so
    it runs on the driver pool with no transaction around it: one round trip)."""

    INSERT = ("WITH stored AS (INSERT INTO received_updates (update_id, payload)"
              " VALUES ($1, $2::jsonb) ON CONFLICT (update_id) DO NOTHING RETURNING update_id)"
              f" SELECT update_id, pg_notify('{CHANNEL}', '') FROM stored")

    def __init__(self, db: Database):
        self.db = db

    async def insert(self, update_id: int, payload_json: str) -> bool:
        """True when the update is new, False when it was already stored."""
        return await self.db.fetchrow(self.INSERT, update_id, payload_json) is not None

    async def discard(self, update_id: str, reason: str, payload_text: str) -> None:
        """Keep an update the product cannot use (never processed)."""
        await self.db.fetchrow("INSERT INTO discarded_updates (update_id, reason, payload)"
                               " VALUES ($1, $2, $3)", update_id, reason, payload_text)


class TelegramRepository:
    def __init__(self, session: AsyncSession):
        self.session = session

    # updates
    async def claim_updates(self, now: datetime, limit: int) -> list[ReceivedUpdate]:
        """Unprocessed updates due now, oldest first, row-locked (`SKIP LOCKED`: replicas
        claim different ones)."""
        stmt = (sa.select(ReceivedUpdate)
                .where(ReceivedUpdate.processed_at.is_(None),
                       sa.or_(ReceivedUpdate.retry_at.is_(None), ReceivedUpdate.retry_at <= now))
                .order_by(ReceivedUpdate.update_id).limit(limit)
                .with_for_update(skip_locked=True))
        return list((await self.session.execute(stmt)).scalars())

    async def unprocessed_counts(self) -> tuple[int, int]:
        """(pending, failing) unprocessed updates; failing = at least one failed attempt."""
        t = ReceivedUpdate.__table__
        row = (await self.session.execute(
            sa.select(sa.func.count().filter(t.c.attempts == 0),
                      sa.func.count().filter(t.c.attempts > 0))
            .where(t.c.processed_at.is_(None)))).one()
        return int(row[0]), int(row[1])

    async def update_failed(self, update_id: int, error: str, retry_at: datetime) -> None:
        t = ReceivedUpdate.__table__
        await self.session.execute(
            sa.update(t).where(t.c.update_id == update_id)
            .values(attempts=t.c.attempts + 1, retry_at=retry_at, last_error=error[:500]))

    # threads
    async def thread(self, ticket_id: str, *, for_update: bool = False) -> TicketThread | None:
        stmt = sa.select(TicketThread).where(TicketThread.ticket_id == ticket_id)
        if for_update:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def ensure_thread(self, ticket_id: str, user_id: str, chat_id: int,
                            subject: str | None) -> None:
        stmt = insert(TicketThread).values(ticket_id=ticket_id, user_id=user_id, chat_id=chat_id,
                                           subject=subject, closed=False)
        if subject is not None:
            stmt = stmt.on_conflict_do_update(
                index_elements=[TicketThread.ticket_id],
                set_={"subject": sa.func.coalesce(TicketThread.subject, subject)},
            )
        else:
            stmt = stmt.on_conflict_do_nothing()
        await self.session.execute(stmt)

    async def thread_by_topic(self, chat_id: int, thread_id: int) -> TicketThread | None:
        stmt = sa.select(TicketThread).where(TicketThread.chat_id == chat_id,
                                             TicketThread.message_thread_id == thread_id)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def ticket_by_message(self, chat_id: int, message_id: int) -> str | None:
        stmt = sa.select(MessageMap.ticket_id).where(MessageMap.chat_id == chat_id,
                                                     MessageMap.message_id == message_id)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def map_message(self, chat_id: int, message_id: int, ticket_id: str) -> None:
        await self.session.execute(
            insert(MessageMap).values(chat_id=chat_id, message_id=message_id, ticket_id=ticket_id)
            .on_conflict_do_nothing()
        )

    # outgoing
    async def add_outgoing(self, **values) -> int | None:
        res = await self.session.execute(
            insert(Outgoing).values(**values).on_conflict_do_nothing().returning(Outgoing.id)
        )
        return res.scalar_one_or_none()

    async def next_pending(self, ticket_id: str | None, outgoing_id: int | None = None
                           ) -> Outgoing | None:
        stmt = sa.select(Outgoing).where(Outgoing.status == "PENDING")
        if ticket_id is not None:
            stmt = stmt.where(Outgoing.ticket_id == ticket_id).order_by(Outgoing.seq, Outgoing.id)
        else:
            stmt = stmt.where(Outgoing.id == outgoing_id)
        return (await self.session.execute(stmt.limit(1).with_for_update())).scalar_one_or_none()

    async def first_pending_in_chat(self, outgoing_id: int) -> Outgoing | None:
        """The earliest pending row, outside tickets, of this row's chat, up to this row
        (this row itself when it is the first), row-locked; None when this row is not pending.
        A row waiting for the lock sees the row sent meanwhile drop out and gets the next."""
        me = (await self.session.execute(sa.select(Outgoing.chat_id, Outgoing.status)
                                         .where(Outgoing.id == outgoing_id))).one_or_none()
        if me is None or me.status != "PENDING":
            return None
        if me.chat_id is None:
            return await self.next_pending(None, outgoing_id)
        stmt = (sa.select(Outgoing)
                .where(Outgoing.chat_id == me.chat_id, Outgoing.ticket_id.is_(None),
                       Outgoing.status == "PENDING", Outgoing.id <= outgoing_id)
                .order_by(Outgoing.id).limit(1).with_for_update())
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def pending_for_event(self, event_id: str) -> list[Outgoing]:
        stmt = sa.select(Outgoing).where(Outgoing.event_id == event_id,
                                         Outgoing.status == "PENDING")
        return list((await self.session.execute(stmt)).scalars())

    async def stale_outgoing(self, older_than: datetime, limit: int = 500) -> list[Outgoing]:
        stmt = (sa.select(Outgoing)
                .where(Outgoing.status == "PENDING", Outgoing.created_at < older_than)
                .order_by(Outgoing.id).limit(limit))
        return list((await self.session.execute(stmt)).scalars())

    # links
    async def link_for_user(self, user_id: str) -> AccountLink | None:
        stmt = sa.select(AccountLink).where(AccountLink.user_id == user_id)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def link_for_telegram(self, telegram_user_id: int) -> AccountLink | None:
        stmt = sa.select(AccountLink).where(AccountLink.telegram_user_id == telegram_user_id)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    # blocked users (a projection of identity events)
    async def is_blocked(self, user_id: str) -> bool:
        stmt = sa.select(UserBlock.blocked).where(UserBlock.user_id == user_id)
        return bool((await self.session.execute(stmt)).scalar_one_or_none())

    async def record_block(self, user_id: str, blocked: bool, changed_at: datetime) -> None:
        """Keep the newest state: an older event arriving late changes nothing."""
        stmt = insert(UserBlock).values(user_id=user_id, blocked=blocked, changed_at=changed_at)
        await self.session.execute(stmt.on_conflict_do_update(
            index_elements=[UserBlock.user_id],
            set_={"blocked": stmt.excluded.blocked, "changed_at": stmt.excluded.changed_at},
            where=UserBlock.changed_at <= stmt.excluded.changed_at))


class ShopRepository:
    """The shop bot's queries: its users (language, menu state, blocked) and invoice messages."""

    def __init__(self, session: AsyncSession):
        self.session = session

    async def bot_user(self, telegram_user_id: int, chat_id: int, language_code: str | None
                       ) -> BotUser:
        """The user's row, made on first contact, row-locked; any contact means the bot is
        not blocked (a user who blocked it cannot write)."""
        stmt = insert(BotUser).values(telegram_user_id=telegram_user_id, chat_id=chat_id,
                                      language_code=language_code)
        await self.session.execute(stmt.on_conflict_do_update(
            index_elements=[BotUser.telegram_user_id],
            set_={"chat_id": chat_id, "bot_blocked_at": None, "updated_at": sa.func.now(),
                  "language_code": sa.func.coalesce(stmt.excluded.language_code,
                                                    BotUser.language_code)}))
        return (await self.session.execute(
            sa.select(BotUser).where(BotUser.telegram_user_id == telegram_user_id)
            .with_for_update().execution_options(populate_existing=True))).scalar_one()

    async def bot_user_by_chat(self, chat_id: int) -> BotUser | None:
        stmt = sa.select(BotUser).where(BotUser.chat_id == chat_id).limit(1)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def mark_blocked(self, chat_id: int, at: datetime) -> None:
        """The private chat's user blocked the bot (a private chat's id is its user's id)."""
        if chat_id <= 0:
            return
        stmt = insert(BotUser).values(telegram_user_id=chat_id, chat_id=chat_id,
                                      bot_blocked_at=at)
        await self.session.execute(stmt.on_conflict_do_update(
            index_elements=[BotUser.telegram_user_id], set_={"bot_blocked_at": at}))

    async def add_invoice(self, **values) -> bool:
        """True when the invoice message is new (a double tap finds it there)."""
        res = await self.session.execute(insert(ShopInvoice).values(**values)
                                         .on_conflict_do_nothing()
                                         .returning(ShopInvoice.invoice_id))
        return res.scalar_one_or_none() is not None

    async def invoice(self, invoice_id: str, *, for_update: bool = False) -> ShopInvoice | None:
        stmt = sa.select(ShopInvoice).where(ShopInvoice.invoice_id == invoice_id)
        if for_update:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def access_due(self, user_id: str, invoice_id: str | None = None
                         ) -> list[ShopInvoice]:
        """Invoice messages of the user whose access message has not followed yet: the paid
        ones, and `invoice_id`'s whatever its status line says (the grant's event may come
        before billing's paid event)."""
        paid = ShopInvoice.status == "PAID"
        if invoice_id is not None:
            paid = sa.or_(paid, ShopInvoice.invoice_id == invoice_id)
        stmt = (sa.select(ShopInvoice)
                .where(ShopInvoice.user_id == user_id, paid,
                       ShopInvoice.access_sent.is_(False))
                .order_by(ShopInvoice.created_at).with_for_update())
        return list((await self.session.execute(stmt)).scalars())
