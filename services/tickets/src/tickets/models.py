"""Tables of the `tickets` schema: tickets, their messages (and staff notes), the messages'
attachments and their bytes, canned replies, outbox and inbox."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from runtime.daystats import stats_days_table, stats_live_table
from runtime.inbox import inbox_table
from runtime.outbox import outbox_table

SCHEMA = "tickets"


class Base(DeclarativeBase):
    metadata = sa.MetaData(schema=SCHEMA)


class Ticket(Base):
    __tablename__ = "tickets"

    id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    user_id: Mapped[str] = mapped_column(sa.Text)
    subject: Mapped[str] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.Text)
    source: Mapped[str] = mapped_column(sa.Text)
    seq: Mapped[int] = mapped_column(sa.Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    last_message_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    # A staff user id, or `tg:<telegram id>` for an operator known only in the support chat.
    assignee_id: Mapped[str | None] = mapped_column(sa.Text)
    assignee_name: Mapped[str | None] = mapped_column(sa.Text)
    # The first staff answer's time (a note is no answer).
    first_response_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    # the wait until then counted in support hours (tickets.hours), fixed when answered
    first_response_business_s: Mapped[int | None] = mapped_column(sa.Integer)
    # The customer's language as last seen ("en", "ru"): canned replies are sent in it.
    language: Mapped[str | None] = mapped_column(sa.Text)
    # CSAT: the customer's 1-5 score after the ticket was closed, given once.
    rating: Mapped[int | None] = mapped_column(sa.Integer)
    rating_comment: Mapped[str | None] = mapped_column(sa.Text)
    rated_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))

    __table_args__ = (
        sa.Index("ix_tickets_user_created", "user_id", "created_at", "id"),
        sa.Index("ix_tickets_status_last", "status", "last_message_at"),
        # the admin list's keyset order, with and without a status filter
        sa.Index("ix_tickets_created", "created_at", "id"),
        sa.Index("ix_tickets_status_created", "status", "created_at", "id"),
        # the KPIs' per-day reads (tickets.stats): open at an instant, closed and rated by day
        sa.Index("ix_tickets_open", sa.text(
            "tstzrange(created_at, greatest(created_at, coalesce(closed_at, 'infinity')),"
            " '(]')"), postgresql_using="gist"),
        sa.Index("ix_tickets_closed", "closed_at",
                 postgresql_where=sa.text("closed_at IS NOT NULL")),
        sa.Index("ix_tickets_rated", "rated_at", postgresql_where=sa.text("rated_at IS NOT NULL")),
    )


class Message(Base):
    __tablename__ = "messages"

    id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    ticket_id: Mapped[str] = mapped_column(sa.ForeignKey("tickets.id", ondelete="CASCADE"))
    author_role: Mapped[str] = mapped_column(sa.Text)
    origin: Mapped[str] = mapped_column(sa.Text)
    body: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    # MESSAGE, or NOTE: an internal note, shown to staff only.
    kind: Mapped[str] = mapped_column(sa.Text, default="MESSAGE", server_default="MESSAGE")
    author_name: Mapped[str | None] = mapped_column(sa.Text)
    # Where the message came from outside (e.g. a Telegram message), unique so it lands once.
    external_ref: Mapped[str | None] = mapped_column(sa.Text, unique=True)

    __table_args__ = (
        sa.Index("ix_messages_ticket_created", "ticket_id", "created_at"),
        # staff answers by time (tickets.stats: first responses in a range)
        sa.Index("ix_messages_answers", "created_at", postgresql_where=sa.text(
            "author_role = 'SUPPORT' AND kind = 'MESSAGE'")),
    )


class Attachment(Base):
    """A file on a message (tickets.attachments); its bytes are in AttachmentBlob. Both go with
    their message, and so with their ticket (retention)."""

    __tablename__ = "attachments"

    id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    ticket_id: Mapped[str] = mapped_column(sa.ForeignKey("tickets.id", ondelete="CASCADE"))
    message_id: Mapped[str] = mapped_column(sa.ForeignKey("messages.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(sa.Text)
    content_type: Mapped[str] = mapped_column(sa.Text)
    size: Mapped[int] = mapped_column(sa.Integer)
    sha256: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    position: Mapped[int] = mapped_column(sa.Integer)  # its place among the message's files

    __table_args__ = (sa.Index("ix_attachments_message", "message_id", "position"),
                      sa.Index("ix_attachments_ticket", "ticket_id"))


class AttachmentBlob(Base):
    """An attachment's bytes, apart from its row so listing attachments never reads them
    (docs/06-adr/0009)."""

    __tablename__ = "attachment_blobs"

    attachment_id: Mapped[str] = mapped_column(
        sa.ForeignKey("attachments.id", ondelete="CASCADE"), primary_key=True)
    data: Mapped[bytes] = mapped_column(sa.LargeBinary)


class CannedReply(Base):
    """A ready answer operators send with `/r <name>`, in the customer's language."""

    __tablename__ = "canned_replies"

    id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    name: Mapped[str] = mapped_column(sa.Text, unique=True)
    body_en: Mapped[str] = mapped_column(sa.Text)
    body_ru: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))


outbox = outbox_table(Base.metadata)
inbox = inbox_table(Base.metadata)
stats_days = stats_days_table(Base.metadata)  # the KPIs' closed days (tickets.stats)
stats_live = stats_live_table(Base.metadata)  # the KPIs' days not closed yet
