"""Tables of the `identity` schema: users, sessions, password resets, the admin audit log,
outbox and inbox."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from runtime.inbox import inbox_table
from runtime.outbox import outbox_table

SCHEMA = "identity"


class Base(DeclarativeBase):
    metadata = sa.MetaData(schema=SCHEMA)


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    # Both null for an account made from Telegram (it signs in through Telegram).
    email: Mapped[str | None] = mapped_column(sa.Text)
    password_hash: Mapped[str | None] = mapped_column(sa.Text)
    role: Mapped[str] = mapped_column(sa.Text, default="USER")
    is_blocked: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    telegram_linked: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    telegram_username: Mapped[str | None] = mapped_column(sa.Text)
    # The linked Telegram user (projected from the telegram service's events).
    telegram_id: Mapped[int | None] = mapped_column(sa.BigInteger)

    __table_args__ = (
        sa.Index("ux_users_email_lower", sa.func.lower(sa.text("email")), unique=True),
        # admin search by prefix (`LIKE 'q%'`): the collation is not C, so text_pattern_ops
        sa.Index("ix_users_email_prefix", sa.text("lower(email) text_pattern_ops")),
        sa.Index("ix_users_telegram_username_prefix",
                 sa.text("lower(telegram_username) text_pattern_ops")),
    )


class Session(Base):
    """A signed-in browser or client; only the SHA-256 of its token is stored."""

    __tablename__ = "sessions"

    token_hash: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    user_id: Mapped[str] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    ip: Mapped[str | None] = mapped_column(sa.Text)
    user_agent: Mapped[str | None] = mapped_column(sa.Text)

    __table_args__ = (
        sa.Index("ix_sessions_user", "user_id"),
        sa.Index("ix_sessions_expires", "expires_at"),
    )


class PasswordReset(Base):
    """A "forgot password" link sent to the linked Telegram chat: single use, short-lived, only
    the SHA-256 of its token stored."""

    __tablename__ = "password_resets"

    token_hash: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    user_id: Mapped[str] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))

    __table_args__ = (sa.Index("ix_password_resets_user", "user_id"),)


class AuditEntry(Base):
    """An admin mutation; `hash` chains each entry to the previous one (tamper-evident)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    actor_id: Mapped[str] = mapped_column(sa.Text)
    actor_role: Mapped[str] = mapped_column(sa.Text)
    action: Mapped[str] = mapped_column(sa.Text)
    target_type: Mapped[str] = mapped_column(sa.Text)
    target_id: Mapped[str] = mapped_column(sa.Text)
    request_id: Mapped[str | None] = mapped_column(sa.Text)
    outcome: Mapped[str] = mapped_column(sa.Text)
    details: Mapped[dict | None] = mapped_column(JSONB)
    prev_hash: Mapped[str] = mapped_column(sa.Text)
    hash: Mapped[str] = mapped_column(sa.Text)

    __table_args__ = (sa.Index("ix_audit_at", "at"),)


outbox = outbox_table(Base.metadata)
inbox = inbox_table(Base.metadata)
