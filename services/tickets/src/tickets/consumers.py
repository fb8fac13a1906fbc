"""Events the tickets service consumes: support replies and user messages from Telegram."""

from __future__ import annotations

from contracts import Envelope
from contracts.telegram import SupportReplyReceivedV1, UserMessageReceivedV1
from runtime.broker import Subscription
from runtime.db import Database
from runtime.errors import IllegalTransition
from runtime.inbox import claim
from runtime.logging import get_logger
from runtime.text import clean_untrusted, has_visible
from tickets.models import inbox
from tickets.repository import TicketRepository
from tickets.service import ticket_service

log = get_logger(__name__)

QUEUE = "tickets.telegram-events"


def build_subscription(db: Database) -> Subscription:
    sub = Subscription(QUEUE)

    @sub.on(SupportReplyReceivedV1)
    async def on_support_reply(env: Envelope, event: SupportReplyReceivedV1) -> None:
        async with db.transaction() as s:
            if not await claim(s, inbox, env.event_id, QUEUE, env.routing_key):
                return
            ref = f"tg:{event.chat_id}:{event.telegram_message_id}"
            repo = TicketRepository(s)
            if await repo.message_by_ref(ref):
                return
            ticket = await repo.get(event.ticket_id, for_update=True)
            if ticket is None:
                raise LookupError(f"support reply for unknown ticket {event.ticket_id}")
            body = _readable(event.body)
            if body is None:
                log.warning("telegram_text_not_visible", ticket_id=ticket.id, ref=ref)
                return
            try:
                await ticket_service.add_message(s, ticket, author="SUPPORT", origin="TELEGRAM",
                                                 body=body, external_ref=ref)
            except IllegalTransition:
                log.warning("support_reply_on_closed_ticket", ticket_id=ticket.id)

    @sub.on(UserMessageReceivedV1)
    async def on_user_message(env: Envelope, event: UserMessageReceivedV1) -> None:
        async with db.transaction() as s:
            if not await claim(s, inbox, env.event_id, QUEUE, env.routing_key):
                return
            ref = f"tg:{event.chat_id}:{event.telegram_message_id}"
            repo = TicketRepository(s)
            if await repo.message_by_ref(ref):
                return
            text = _readable(event.text)
            if text is None:  # nothing an operator could read: no ticket, no message
                log.warning("telegram_text_not_visible", user_id=event.user_id, ref=ref)
                return
            ticket = None
            if event.ticket_id:
                ticket = await repo.get(event.ticket_id, for_update=True)
                if ticket is not None and ticket.user_id != event.user_id:
                    ticket = None
            if ticket is None:
                ticket = await repo.latest_open_for_user(event.user_id)
            if ticket is None:
                subject = _subject_from(text)
                await ticket_service.open(s, user_id=event.user_id, subject=subject,
                                          body=text, source="TELEGRAM", origin="TELEGRAM",
                                          external_ref=ref)
                return
            await ticket_service.add_message(s, ticket, author="USER", origin="TELEGRAM",
                                             body=text, external_ref=ref)

    return sub


def _readable(text: str) -> str | None:
    """Chat text as stored: the same cleaning as the API's (runtime.text), plus NUL and lone
    surrogates dropped (an event cannot be refused, and Postgres would refuse them); None when
    nothing visible is left."""
    cleaned = clean_untrusted(text)[:4000]
    return cleaned if has_visible(cleaned) else None


def _subject_from(text: str) -> str:
    line = " ".join(text.split())[:80] or "Telegram message"
    return line if len(line) >= 3 else f"Telegram: {line}"
