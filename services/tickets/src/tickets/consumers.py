"""Events the tickets service consumes: support replies, operators' topic commands and user
messages from Telegram.

Each handler claims the inbox row and hands the event to the ticket service in the same
transaction; which ticket a message belongs to, and what of its text is kept, is the service's
decision (`TicketService.message_from_telegram`, `reply_from_telegram`).
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from contracts import Envelope
from contracts.telegram import (
    SupportCommandReceivedV1,
    SupportReplyReceivedV1,
    UserMessageReceivedV1,
)
from runtime.broker import Subscription
from runtime.db import Database
from runtime.logging import get_logger
from tickets.desk import support_desk
from tickets.models import inbox
from tickets.service import ticket_service

log = get_logger(__name__)

QUEUE = "tickets.telegram-events"


def build_subscription(db: Database) -> Subscription:
    sub = Subscription(QUEUE, db=db, inbox=inbox,
                       description="Operators' replies and customers' messages from Telegram.")

    @sub.once(SupportReplyReceivedV1)
    async def on_support_reply(s: AsyncSession, env: Envelope,
                               event: SupportReplyReceivedV1) -> None:
        await ticket_service.reply_from_telegram(
            s, ticket_id=event.ticket_id, chat_id=event.chat_id,
            message_id=event.telegram_message_id, body=event.body,
            operator_telegram_id=event.operator_telegram_id, operator_name=event.operator_name)

    @sub.once(UserMessageReceivedV1)
    async def on_user_message(s: AsyncSession, env: Envelope,
                              event: UserMessageReceivedV1) -> None:
        await ticket_service.message_from_telegram(
            s, user_id=event.user_id, ticket_id=event.ticket_id, chat_id=event.chat_id,
            message_id=event.telegram_message_id, text=event.text,
            language_code=event.language_code)

    @sub.once(SupportCommandReceivedV1)
    async def on_support_command(s: AsyncSession, env: Envelope,
                                 event: SupportCommandReceivedV1) -> None:
        outcome = await support_desk.command_from_telegram(s, event)
        log.info("support_command", command=event.command, outcome=outcome,
                 ticket_id=event.ticket_id)

    return sub
