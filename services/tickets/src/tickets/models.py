"""Tables of the `tickets` schema: tickets, their messages, outbox and inbox."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

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

    __table_args__ = (
        sa.Index("ix_tickets_user_created", "user_id", "created_at", "id"),
        sa.Index("ix_tickets_status_last", "status", "last_message_at"),
    )


class Message(Base):
    __tablename__ = "messages"

    id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    ticket_id: Mapped[str] = mapped_column(sa.ForeignKey("tickets.id", ondelete="CASCADE"))
    author_role: Mapped[str] = mapped_column(sa.Text)
    origin: Mapped[str] = mapped_column(sa.Text)
    body: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    # Where the message came from outside (e.g. a Telegram message), unique so it lands once.
    external_ref: Mapped[str | None] = mapped_column(sa.Text, unique=True)

    __table_args__ = (sa.Index("ix_messages_ticket_created", "ticket_id", "created_at"),)


outbox = outbox_table(Base.metadata)
inbox = inbox_table(Base.metadata)
