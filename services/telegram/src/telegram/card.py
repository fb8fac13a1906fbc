"""The customer card pinned at the top of each ticket's topic in the support chat.

It shows the account (email or Telegram username, since when), the subscription (plan, status,
expiry, devices, traffic used when the panel tells), the last 3 invoices, the open tickets and a
link to the customer in the admin panel. Everything on it is read live through the services'
internal APIs, as the customer (`telegram.shopapi`), plus what this service keeps from events
(the Telegram link, `customer_view`).

The card is posted once, as the ticket's second row in its topic (`topic_card`, right after the
opening message) and pinned; its message id is kept in `ticket_cards`, so it is never posted
again, restarts included. Events that change what it shows (billing's invoices, the
provisioner's subscription changes, the customer's tickets) mark the cards of the customer's
open topics due (`due_at`, `TELEGRAM_CARD_DEBOUNCE_SECONDS` ahead, kept if already set) and
queue one `card` job per card and due time, so a burst of events makes one edit. The job renders
the card and edits the message in place when the text changed ("message is not modified" is
success); an event that came while it was reading (`touches` moved) makes the card due again.
A card that could not read a service shows a dash there and is due again in 30 s; the sweep
re-queues cards whose job was lost.
"""

from __future__ import annotations

import asyncio
import html
from datetime import datetime, timedelta
from decimal import Decimal
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from runtime.clock import now
from runtime.db import Database
from runtime.logging import get_logger
from telegram.botapi import BotApi, TelegramError
from telegram.config import Settings
from telegram.models import CustomerView, TicketCard, TicketThread
from telegram.repository import TelegramRepository
from telegram.shopapi import ShopApi, ShopApiError

log = get_logger(__name__)

NOT_MODIFIED = "message is not modified"
RETRY_INCOMPLETE = timedelta(seconds=30)
GB = 1024 ** 3


def _esc(text: str) -> str:
    return html.escape(text, quote=False)


def _day(value: str | datetime | None) -> str:
    if value is None:
        return "—"
    return value[:10] if isinstance(value, str) else f"{value:%Y-%m-%d}"


def _gb(n: int) -> str:
    return f"{Decimal(n) / GB:.1f} GB"


def admin_url(base: str, user_id: str) -> str:
    """The customer in the admin panel: the users page found by their id."""
    return f"{base.rstrip('/')}/admin/users?q={quote(user_id, safe='')}"


class Cards:
    """Renders, posts and edits the customer cards (the notify worker's part)."""

    def __init__(self, settings: Settings, bot: BotApi, api: ShopApi | None = None):
        self.settings = settings
        self.bot = bot
        self.api = api or ShopApi(settings.billing_url, settings.provisioner_url,
                                  settings.internal_signing_key, settings.shop_api_timeout,
                                  settings.tickets_url)

    # ---------------------------------------------------------------- what the card shows

    async def render(self, s: AsyncSession, user_id: str) -> tuple[str, bool]:
        """The card's HTML and whether every part of it could be read."""
        complete = True
        lines = ["🪪 <b>Customer</b>"]
        view = await s.get(CustomerView, user_id)
        link = await TelegramRepository(s).link_for_user(user_id)
        if view is not None and view.email:
            lines.append(f"👤 {_esc(view.email)} · since {_day(view.registered_at)}")
        elif view is not None:
            lines.append(f"👤 Telegram account · since {_day(view.registered_at)}")
        else:
            lines.append(f"👤 user {_esc(user_id)}")
        if link is not None:
            name = f"@{link.telegram_username}" if link.telegram_username else \
                f"id {link.telegram_user_id}"
            lines.append(f"✈️ Telegram {_esc(name)} · linked {_day(link.linked_at)}")
        parts = await asyncio.gather(self._subscription(user_id), self._invoices(user_id),
                                     self._open_tickets(user_id), return_exceptions=True)
        for part, unread in zip(parts, ("📦 Subscription: —", "🧾 Invoices: —",
                                        "🎫 Open tickets: —"), strict=True):
            if isinstance(part, ShopApiError):
                complete = False
                lines.append(unread)
            elif isinstance(part, BaseException):
                raise part
            else:
                lines += part
        lines.append(f'🔗 <a href="{_esc(admin_url(self.settings.app_base_url, user_id))}">'
                     "Customer in the admin panel</a>")
        return "\n".join(lines), complete

    async def _subscription(self, user_id: str) -> list[str]:
        subs = await self.api.subscriptions(user_id)
        if not subs:
            return ["📦 No subscription"]
        sub = max(subs, key=lambda x: x["expires_at"])
        plans = {p["id"]: p["name"] for p in await self.api.plans(user_id)}
        plan = plans.get(sub["plan_id"], sub["plan_id"])
        out = [f"📦 {_esc(plan)} · {sub['status']} · until {_day(sub['expires_at'])} · "
               f"{sub['max_devices']} devices"]
        try:
            usage = await self.api.usage(user_id, sub["id"])
        except ShopApiError as exc:
            if exc.unavailable:
                raise
            usage = None  # the panel cannot tell (or no account yet)
        if usage and usage.get("used_bytes") is not None:
            limit = usage.get("limit_bytes")
            line = f"📊 Traffic {_gb(usage['used_bytes'])}"
            line += f" of {_gb(limit)}" if limit else " (unlimited)"
            if usage.get("resets_at"):
                line += f" · resets {_day(usage['resets_at'])}"
            devices = usage.get("devices") or {}
            if devices.get("used") is not None:
                line += f" · {devices['used']} devices online"
            out.append(line)
        return out

    async def _open_tickets(self, user_id: str) -> list[str]:
        tickets = await self.api.tickets(user_id)
        return [f"🎫 Open tickets: {sum(1 for x in tickets if x['status'] != 'CLOSED')}"]

    async def _invoices(self, user_id: str) -> list[str]:
        invoices = (await self.api.invoices(user_id, 3))[:3]
        if not invoices:
            return ["🧾 No invoices"]
        return ["🧾 Last invoices:"] + [
            f"  • {_day(i['created_at'])} ${Decimal(str(i['amount_usd'])):.2f} {i['status']}"
            for i in invoices]

    # ---------------------------------------------------------------- posted once, pinned

    async def step(self, s: AsyncSession, thread: TicketThread, forum: bool) -> bool:
        """The ticket's `topic_card` row: post the card (committed before it is pinned, so a
        retry pins it rather than post it again), then pin it. True when done."""
        card = await s.get(TicketCard, thread.ticket_id, with_for_update=True)
        if card is None:
            card = TicketCard(ticket_id=thread.ticket_id, user_id=thread.user_id,
                              chat_id=thread.chat_id, pinned=False, edits=0, touches=0)
            s.add(card)
        if card.message_id is None:
            text, complete = await self.render(s, thread.user_id)
            msg = await self.bot.call(
                "sendMessage", chat_id=thread.chat_id, text=text, parse_mode="HTML",
                message_thread_id=thread.message_thread_id if forum else None,
                reply_parameters={"message_id": thread.root_message_id,
                                  "allow_sending_without_reply": True}
                if not forum and thread.root_message_id else None,
                link_preview_options={"is_disabled": True})
            card.message_id, card.text = msg["message_id"], text
            card.due_at = None if complete else now() + RETRY_INCOMPLETE
            card.updated_at = now()
            await TelegramRepository(s).map_message(thread.chat_id, msg["message_id"],
                                                    thread.ticket_id)
            return False
        if not card.pinned and forum:  # a plain group's pin would sit above every ticket
            await self.bot.call("pinChatMessage", chat_id=card.chat_id,
                                message_id=card.message_id, disable_notification=True)
        card.pinned = True
        return True

    # ---------------------------------------------------------------- edited in place

    async def refresh(self, db: Database, ticket_id: str) -> tuple[bool, datetime | None]:
        """The `card` job: edit the card if it is due and its text changed. Returns whether it
        was edited, and when it is due again (an event came while it was being read, or a
        service could not be read): that job is queued by the caller."""
        async with db.transaction() as s:
            card = await s.get(TicketCard, ticket_id)
            if card is None or card.message_id is None or card.due_at is None:
                return False, None
            user_id, seen = card.user_id, card.touches
        async with db.transaction() as s:
            text, complete = await self.render(s, user_id)
        async with db.transaction() as s:
            card = await s.get(TicketCard, ticket_id, with_for_update=True)
            assert card is not None and card.message_id is not None
            if card.touches != seen:  # changed since it was read: read it again soon
                card.due_at = now() + timedelta(seconds=self.settings.card_debounce_seconds)
            else:
                card.due_at = None if complete else now() + RETRY_INCOMPLETE
            again = card.due_at
            if text == card.text:
                return False, again
            try:
                await self.bot.call("editMessageText", chat_id=card.chat_id,
                                    message_id=card.message_id, text=text, parse_mode="HTML",
                                    link_preview_options={"is_disabled": True})
            except TelegramError as exc:
                if not (exc.status == 400 and NOT_MODIFIED in exc.description):
                    raise
            card.text, card.updated_at = text, now()
            card.edits += 1
            return True, again


async def touch(s: AsyncSession, user_id: str, delay: float) -> list[tuple[str, datetime]]:
    """Mark the cards of the customer's open topics due (a due time already set is kept);
    returns `(ticket_id, due_at)` to queue after commit."""
    due = sa.func.now() + sa.func.make_interval(0, 0, 0, 0, 0, 0, delay)
    rows = await s.execute(
        sa.update(TicketCard)
        .where(TicketCard.user_id == user_id, TicketCard.message_id.is_not(None),
               TicketCard.ticket_id.in_(sa.select(TicketThread.ticket_id).where(
                   TicketThread.user_id == user_id, TicketThread.closed.is_(False))))
        .values(due_at=sa.func.coalesce(TicketCard.due_at, due),
                touches=TicketCard.touches + 1)
        .returning(TicketCard.ticket_id, TicketCard.due_at))
    return [(r.ticket_id, r.due_at) for r in rows]


async def overdue(s: AsyncSession, older_than: datetime, limit: int = 200
                  ) -> list[tuple[str, datetime]]:
    """Cards due for longer than their job should take (a lost job, a retry after an outage)."""
    rows = await s.execute(
        sa.select(TicketCard.ticket_id, TicketCard.due_at)
        .where(TicketCard.due_at.is_not(None), TicketCard.due_at < older_than)
        .order_by(TicketCard.due_at).limit(limit))
    return [(r.ticket_id, r.due_at) for r in rows]
