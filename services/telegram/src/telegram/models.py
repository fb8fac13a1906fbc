"""Tables of the `telegram` schema: received updates, ticket threads, outgoing messages, links,
Stars payments, the shop bot's users and invoice messages, broadcasts and their recipients."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from runtime.inbox import inbox_table
from runtime.outbox import outbox_table

SCHEMA = "telegram"


class Base(DeclarativeBase):
    metadata = sa.MetaData(schema=SCHEMA)


class ReceivedUpdate(Base):
    """Every webhook update once (`update_id` is the key), processed after the webhook answers
    by the worker's update pump, in `update_id` order; a failed one waits until `retry_at`."""

    __tablename__ = "received_updates"

    update_id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    payload: Mapped[dict] = mapped_column(JSONB)
    received_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True),
                                                  server_default=sa.func.now())
    processed_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    outcome: Mapped[str | None] = mapped_column(sa.Text)
    attempts: Mapped[int] = mapped_column(sa.Integer, server_default="0")
    retry_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(sa.Text)

    __table_args__ = (
        sa.Index("ix_updates_pending", "update_id",
                 postgresql_where=sa.text("processed_at IS NULL")),
    )


class DiscardedUpdate(Base):
    """A webhook update the product cannot use (an integer outside int64, NUL or a lone
    surrogate in a string): answered 200 so Telegram does not redeliver it, and kept here as
    ASCII-escaped JSON text (jsonb and text columns cannot hold NUL)."""

    __tablename__ = "discarded_updates"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    update_id: Mapped[str] = mapped_column(sa.Text)  # as sent: it may not fit a bigint
    reason: Mapped[str] = mapped_column(sa.Text)
    payload: Mapped[str] = mapped_column(sa.Text)
    received_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True),
                                                  server_default=sa.func.now())


class UserBlock(Base):
    """The newest block state of a web account, from identity events: a blocked user's bot
    messages open no ticket."""

    __tablename__ = "user_blocks"

    user_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    blocked: Mapped[bool] = mapped_column(sa.Boolean)
    changed_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))


class TicketThread(Base):
    """Where a ticket lives in the support chat: a forum topic, or a root message to reply to."""

    __tablename__ = "ticket_threads"

    ticket_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    user_id: Mapped[str] = mapped_column(sa.Text)
    subject: Mapped[str | None] = mapped_column(sa.Text)
    chat_id: Mapped[int] = mapped_column(sa.BigInteger)
    message_thread_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    root_message_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    closed: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    # Highest ticket event `seq` applied; events are applied strictly in seq order.
    delivered_seq: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True),
                                                 server_default=sa.func.now())

    __table_args__ = (
        sa.Index("ux_threads_topic", "chat_id", "message_thread_id", unique=True,
                 postgresql_where=sa.text("message_thread_id IS NOT NULL")),
    )


class Outgoing(Base):
    """A message (or topic action) to deliver, in `seq` order per ticket, exactly once."""

    __tablename__ = "outgoing"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    event_id: Mapped[str] = mapped_column(sa.Text)
    ticket_id: Mapped[str | None] = mapped_column(sa.Text)
    chat_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    thread_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    kind: Mapped[str] = mapped_column(sa.Text)
    seq: Mapped[int] = mapped_column(sa.Integer, default=0)
    text: Mapped[str | None] = mapped_column(sa.Text)
    parse_mode: Mapped[str | None] = mapped_column(sa.Text)  # "HTML", or None: plain text
    # A Bot API call other than sendMessage (the shop bot's edits, photos, callback answers):
    # the method and its parameters; None: sendMessage of `text`.
    method: Mapped[str | None] = mapped_column(sa.Text)
    params: Mapped[dict | None] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(sa.Text, default="PENDING")
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    telegram_message_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True),
                                                 server_default=sa.func.now())
    sent_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))

    __table_args__ = (
        sa.UniqueConstraint("event_id", "kind", name="ux_outgoing_event_kind"),
        sa.Index("ix_outgoing_pending", "ticket_id", "seq", "id",
                 postgresql_where=sa.text("status = 'PENDING'")),
        # a chat's pending rows outside tickets, oldest first (Delivery.deliver_one)
        sa.Index("ix_outgoing_chat_pending", "chat_id", "id",
                 postgresql_where=sa.text("status = 'PENDING' AND ticket_id IS NULL")),
    )


class MessageMap(Base):
    """Support-chat messages that belong to a ticket (for reply threading)."""

    __tablename__ = "message_map"

    chat_id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    message_id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    ticket_id: Mapped[str] = mapped_column(sa.Text)


class AccountLink(Base):
    """A web account linked to a Telegram user (one each way)."""

    __tablename__ = "account_links"

    user_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    telegram_user_id: Mapped[int] = mapped_column(sa.BigInteger, unique=True)
    telegram_username: Mapped[str | None] = mapped_column(sa.Text)
    chat_id: Mapped[int] = mapped_column(sa.BigInteger)
    linked_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True),
                                                server_default=sa.func.now())


class LinkToken(Base):
    """One-time deep-link tokens, stored only as a SHA-256 hash."""

    __tablename__ = "link_tokens"

    token_hash: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    user_id: Mapped[str] = mapped_column(sa.Text)
    expires_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))


class SubscriptionView(Base):
    """The latest subscription state per user, from provisioning events (for `/status`)."""

    __tablename__ = "subscription_view"

    user_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    status: Mapped[str] = mapped_column(sa.Text)
    expires_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True),
                                                 server_default=sa.func.now())


class StarsPayment(Base):
    """A Telegram Stars payment the bot received (`message.successful_payment`), once per
    charge id: relayed to billing as `telegram.stars_payment.received.v1` when first recorded.
    `refunded_at` is set by the `refunded_payment` message that follows a refund."""

    __tablename__ = "stars_payments"

    telegram_payment_charge_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    invoice_payload: Mapped[str] = mapped_column(sa.Text)
    total_amount: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.Text)
    telegram_user_id: Mapped[int] = mapped_column(sa.BigInteger)
    chat_id: Mapped[int] = mapped_column(sa.BigInteger)
    update_id: Mapped[int] = mapped_column(sa.BigInteger)
    paid_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    refunded_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))


class BotUser(Base):
    """A Telegram user the bot talked to: the language chosen (None: from `language_code`), the
    menu's state (the purchase being put together), and whether they blocked the bot (no
    notices until they write again)."""

    __tablename__ = "bot_users"

    telegram_user_id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True,
                                                  autoincrement=False)
    chat_id: Mapped[int] = mapped_column(sa.BigInteger)
    language: Mapped[str | None] = mapped_column(sa.Text)
    language_code: Mapped[str | None] = mapped_column(sa.Text)
    state: Mapped[dict | None] = mapped_column(JSONB)
    bot_blocked_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True),
                                                 server_default=sa.func.now())

    __table_args__ = (sa.Index("ix_bot_users_chat", "chat_id"),)


class ShopInvoice(Base):
    """An invoice created in the bot and the message that shows it (its status line is edited
    as billing's events arrive; `access_sent` once the access message followed)."""

    __tablename__ = "shop_invoices"

    invoice_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    user_id: Mapped[str] = mapped_column(sa.Text)
    chat_id: Mapped[int] = mapped_column(sa.BigInteger)
    message_id: Mapped[int] = mapped_column(sa.BigInteger)
    title: Mapped[str] = mapped_column(sa.Text)  # what was bought, as the message names it
    status: Mapped[str] = mapped_column(sa.Text)
    access_sent: Mapped[bool] = mapped_column(sa.Boolean, default=False,
                                              server_default=sa.false())
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True),
                                                 server_default=sa.func.now())

    __table_args__ = (sa.Index("ix_shop_invoices_user", "user_id", "created_at"),)


class LoginToken(Base):
    """One-time web sign-in links the bot gives on `/login`, stored only as a SHA-256 hash:
    the gateway redeems one once, before `expires_at`, for a session of `user_id`."""

    __tablename__ = "login_tokens"

    token_hash: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    user_id: Mapped[str] = mapped_column(sa.Text)
    telegram_user_id: Mapped[int] = mapped_column(sa.BigInteger)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))

    __table_args__ = (sa.Index("ix_login_tokens_telegram", "telegram_user_id", "created_at"),)


class CustomerView(Base):
    """Web accounts as identity announced them (`identity.user.registered`, `.role_changed`):
    the email and since when, for the customer card in a ticket's topic, and the role, for the
    desk's ADMIN-only commands (an operator whose Telegram is linked to an ADMIN account)."""

    __tablename__ = "customer_view"

    user_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    email: Mapped[str | None] = mapped_column(sa.Text)
    role: Mapped[str | None] = mapped_column(sa.Text)
    registered_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    role_changed_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))


class TicketCard(Base):
    """The customer card pinned at the top of a ticket's topic (telegram.card): its message,
    posted once (`message_id`), the text it shows, and `due_at` while an edit is wanted (the
    edit waits that long, so a burst of events makes one edit)."""

    __tablename__ = "ticket_cards"

    ticket_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    user_id: Mapped[str] = mapped_column(sa.Text)
    chat_id: Mapped[int] = mapped_column(sa.BigInteger)
    message_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    pinned: Mapped[bool] = mapped_column(sa.Boolean, default=False, server_default=sa.false())
    text: Mapped[str | None] = mapped_column(sa.Text)
    due_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    edits: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    touches: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True),
                                                 server_default=sa.func.now())

    __table_args__ = (
        sa.Index("ix_ticket_cards_user", "user_id"),
        sa.Index("ix_ticket_cards_due", "due_at", postgresql_where=sa.text("due_at IS NOT NULL")),
    )


class CustomerFacts(Base):
    """What a broadcast's segments need besides `subscription_view`, from events this service
    already consumes: the first trial and the first paid invoice (`billing.invoice.paid`, by
    kind) and when the subscription last expired (`provisioning.subscription.expired`)."""

    __tablename__ = "customer_facts"

    user_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    trial_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    paid_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    expired_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))


class Broadcast(Base):
    """An admin's message to a segment of linked customers (`telegram.broadcasts`): DRAFT →
    SENDING ⇄ PAUSED → DONE / CANCELED. The counters move with each recipient's row;
    `runner` and `heartbeat_at` fence the one job run that sends it; `held_until` is Telegram's
    `retry_after` (the whole broadcast waits)."""

    __tablename__ = "broadcasts"

    id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    segment: Mapped[str] = mapped_column(sa.Text)
    text_en: Mapped[str] = mapped_column(sa.Text)
    text_ru: Mapped[str] = mapped_column(sa.Text)
    buttons: Mapped[list] = mapped_column(JSONB, default=list)
    status: Mapped[str] = mapped_column(sa.Text, default="DRAFT")
    created_by: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True),
                                                 server_default=sa.func.now())
    started_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    total: Mapped[int] = mapped_column(sa.Integer, default=0)
    sent: Mapped[int] = mapped_column(sa.Integer, default=0)
    failed: Mapped[int] = mapped_column(sa.Integer, default=0)
    blocked_by_user: Mapped[int] = mapped_column(sa.Integer, default=0)
    # Recipients whose send was in flight when a worker died: sent again (see the module).
    resent: Mapped[int] = mapped_column(sa.Integer, default=0)
    planned: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    plan_cursor: Mapped[str | None] = mapped_column(sa.Text)
    held_until: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    runner: Mapped[str | None] = mapped_column(sa.Text)
    heartbeat_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    generation: Mapped[int] = mapped_column(sa.Integer, default=0)

    __table_args__ = (sa.Index("ix_broadcasts_created", "created_at"),
                      sa.Index("ix_broadcasts_sending", "id",
                               postgresql_where=sa.text("status = 'SENDING'")))


class BroadcastRecipient(Base):
    """One recipient of a broadcast, planned once: PENDING → SENDING (claimed, the send may be
    in flight) → SENT, FAILED or BLOCKED (the user blocked the bot)."""

    __tablename__ = "broadcast_recipients"

    broadcast_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    user_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    chat_id: Mapped[int] = mapped_column(sa.BigInteger)
    language: Mapped[str] = mapped_column(sa.Text)
    state: Mapped[str] = mapped_column(sa.Text, default="PENDING")
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    telegram_message_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    error: Mapped[str | None] = mapped_column(sa.Text)
    sent_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))

    __table_args__ = (sa.Index("ix_broadcast_recipients_open", "broadcast_id", "user_id",
                               postgresql_where=sa.text("state IN ('PENDING', 'SENDING')")),)


class DeskAction(Base):
    """An ADMIN operator's `/extend` or `/resend` in a ticket's topic, once per update: who
    (the operator's Telegram id and name, and the ADMIN account it is linked to), what, and
    what came of it (the desk's own audit of these commands). `/extend` runs at most once:
    RUNNING is committed before the provisioner is called, so an interrupted call is reported
    as UNKNOWN rather than repeated."""

    __tablename__ = "desk_actions"

    update_id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    ticket_id: Mapped[str] = mapped_column(sa.Text)
    customer_id: Mapped[str] = mapped_column(sa.Text)
    command: Mapped[str] = mapped_column(sa.Text)
    argument: Mapped[str | None] = mapped_column(sa.Text)
    operator_telegram_id: Mapped[int] = mapped_column(sa.BigInteger)
    operator_name: Mapped[str | None] = mapped_column(sa.Text)
    actor_id: Mapped[str] = mapped_column(sa.Text)  # the operator's ADMIN account
    status: Mapped[str] = mapped_column(sa.Text)  # PENDING RUNNING DONE FAILED UNKNOWN
    result: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))


outbox = outbox_table(Base.metadata)
inbox = inbox_table(Base.metadata)
