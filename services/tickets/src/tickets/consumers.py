"""Events the tickets service consumes: support replies and user messages from Telegram.

Each handler claims the inbox row and hands the event to the ticket service in the same
transaction; which ticket a message belongs to, and what of its text is kept, is the service's
decision (`TicketService.message_from_telegram`, `reply_from_telegram`).
"""

from __future__ import annotations

from contracts import Envelope
from contracts.telegram import SupportReplyReceivedV1, UserMessageReceivedV1
from runtime.broker import Subscription
from runtime.db import Database
from runtime.inbox import claim
from tickets.models import inbox
from tickets.service import ticket_service

QUEUE = "tickets.telegram-events"


def build_subscription(db: Database) -> Subscription:
    sub = Subscription(QUEUE)

    @sub.on(SupportReplyReceivedV1)
    async def on_support_reply(env: Envelope, event: SupportReplyReceivedV1) -> None:
        async with db.transaction() as s:
            if not await claim(s, inbox, env.event_id, QUEUE, env.routing_key):
                return
            await ticket_service.reply_from_telegram(
                s, ticket_id=event.ticket_id, chat_id=event.chat_id,
                message_id=event.telegram_message_id, body=event.body)

    @sub.on(UserMessageReceivedV1)
    async def on_user_message(env: Envelope, event: UserMessageReceivedV1) -> None:
        async with db.transaction() as s:
            if not await claim(s, inbox, env.event_id, QUEUE, env.routing_key):
                return
            await ticket_service.message_from_telegram(
                s, user_id=event.user_id, ticket_id=event.ticket_id, chat_id=event.chat_id,
                message_id=event.telegram_message_id, text=event.text)

    return sub
