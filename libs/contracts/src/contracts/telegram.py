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
    # The sender's Telegram `language_code` (e.g. "ru"), when Telegram tells it.
    language_code: str | None = None


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


class SupportCommandReceivedV1(EventPayload):
    """An operator's command in a ticket's support topic (`/note`, `/r`, `/close`, `/assign`,
    `/unassign`): the tickets service carries it out. `argument` is the text after the
    command (the note, the canned reply's name), empty when there is none."""

    event_type = "telegram.support_command.received"
    ticket_id: str
    command: str
    argument: str
    operator_telegram_id: int
    operator_name: str | None = None
    chat_id: int
    telegram_message_id: int
    update_id: int
    received_at: datetime


class AccountCreatedV1(EventPayload):
    """A Telegram user with no account pressed /start: the bot linked them to a new account id.
    The gateway, which owns accounts, makes the account (no email, no password) and announces
    it as `identity.user.registered.v1` with the referral code it came with."""

    event_type = "telegram.account.created"
    user_id: str
    telegram_user_id: int
    telegram_username: str | None = None
    first_name: str | None = None
    language_code: str | None = None
    referral_code: str | None = None
    created_at: datetime
