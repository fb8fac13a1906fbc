"""telegram.* events, produced by the telegram service."""

from __future__ import annotations

from datetime import datetime

from contracts.envelope import EventPayload


class SupportReplyReceivedV1(EventPayload):
    event_type = "telegram.support_reply.received"
    ticket_id: str
    body: str
    operator_telegram_id: int
    operator_name: str | None = None
    chat_id: int
    telegram_message_id: int
    update_id: int
    received_at: datetime


class UserMessageReceivedV1(EventPayload):
    event_type = "telegram.user_message.received"
    user_id: str
    ticket_id: str | None
    telegram_user_id: int
    chat_id: int
    telegram_message_id: int
    text: str
    update_id: int
    received_at: datetime


class AccountLinkedV1(EventPayload):
    event_type = "telegram.account.linked"
    user_id: str
    telegram_user_id: int
    telegram_username: str | None
    linked_at: datetime


class StarsPaymentReceivedV1(EventPayload):
    """A Telegram Stars payment the bot received (`message.successful_payment`), once per
    charge: the invoice it pays is the invoice's payload (billing's invoice id)."""

    event_type = "telegram.stars_payment.received"
    invoice_id: str
    telegram_payment_charge_id: str
    total_amount: int
    currency: str
    telegram_user_id: int
    paid_at: datetime
