"""Queries on the identity schema."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.models import AuditEntry, PasswordReset, Session, User
from runtime.db import Database
from runtime.repository import Repository


@dataclass(frozen=True, slots=True)
class SignedInUser:
    """The user behind a live session, as every request sees it (read-only)."""

    id: str
    email: str | None
    role: str
    is_blocked: bool
    created_at: datetime
    telegram_linked: bool
    telegram_username: str | None
    telegram_id: int | None = None


class SessionReader:
    """The session lookup every authenticated request makes: one statement on the driver's
    connections (`Database.fetchrow`), no ORM and no transaction, since it only reads."""

    QUERY = (
        "SELECT u.id, u.email, u.role, u.is_blocked, u.created_at, u.telegram_linked,"
        " u.telegram_username, u.telegram_id FROM users u JOIN sessions s ON s.user_id = u.id"
        " WHERE s.token_hash = $1 AND s.expires_at > $2"
    )

    def __init__(self, db: Database):
        self.db = db

    async def user_for_token(self, token_hash: str, now: datetime) -> SignedInUser | None:
        row = await self.db.fetchrow(self.QUERY, token_hash, now)
        return SignedInUser(*row) if row is not None else None


class UserRepository(Repository[User]):
    model = User

    async def by_email(self, email: str) -> User | None:
        stmt = sa.select(User).where(sa.func.lower(User.email) == email.lower())
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def lock_active_admins(self) -> list[str]:
        """Ids of the unblocked ADMINs, their rows locked in id order until the transaction
        ends. Under READ COMMITTED a row another transaction demoted or blocked meanwhile is
        re-checked once its lock is released, so it is no longer counted."""
        stmt = (sa.select(User.id).where(User.role == "ADMIN", User.is_blocked.is_(False))
                .order_by(User.id).with_for_update())
        return list((await self.session.execute(stmt)).scalars())

    async def link_telegram(self, user_id: str, username: str | None,
                            telegram_id: int | None = None) -> None:
        """The projection of the telegram service's `AccountLinkedV1`: this Telegram is now
        this account's, and no longer any other's (a link the bot moved from the account
        `/start` made to the customer's web account)."""
        if telegram_id is not None:
            await self.session.execute(
                sa.update(User).where(User.telegram_id == telegram_id, User.id != user_id)
                .values(telegram_linked=False, telegram_username=None, telegram_id=None))
        await self.session.execute(sa.update(User).where(User.id == user_id).values(
            telegram_linked=True, telegram_username=username, telegram_id=telegram_id))

    async def add_telegram_user(self, user_id: str, telegram_id: int, username: str | None,
                                at: datetime) -> bool:
        """An account made from Telegram (no email, no password); False when it exists."""
        stmt = (insert(User).values(id=user_id, email=None, password_hash=None, role="USER",
                                    is_blocked=False, created_at=at, telegram_linked=True,
                                    telegram_username=username, telegram_id=telegram_id)
                .on_conflict_do_nothing(index_elements=[User.id]).returning(User.id))
        return (await self.session.execute(stmt)).first() is not None

    async def emails(self, user_ids: set[str]) -> dict[str, str]:
        if not user_ids:
            return {}
        rows = await self.session.execute(sa.select(User.id, User.email)
                                          .where(User.id.in_(user_ids)))
        return dict(rows.tuples().all())

    async def search(self, q: str | None, limit: int, cursor: str | None) -> list[User]:
        """Users whose email or Telegram username starts with `q` (case-insensitive; an `@`
        before a username is ignored), or whose id is `q`, in id order. Prefixes, so each
        is one range of an index (`ix_users_email_prefix`, `ix_users_telegram_username_prefix`)
        however many users there are."""
        stmt = sa.select(User)
        if q:
            escaped = q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            stmt = stmt.where(sa.or_(
                sa.func.lower(User.email).like(f"{escaped}%"),
                sa.func.lower(User.telegram_username).like(f"{escaped.removeprefix('@')}%"),
                User.id == q))
        if cursor:
            stmt = stmt.where(User.id > cursor)
        return list((await self.session.execute(stmt.order_by(User.id).limit(limit + 1))).scalars())


class SessionRepository:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def delete(self, token_hash: str) -> None:
        await self.session.execute(sa.delete(Session).where(Session.token_hash == token_hash))

    async def delete_for_user(self, user_id: str, keep: str | None = None) -> int:
        """Every session of the user, but the one whose token hash is `keep`."""
        stmt = sa.delete(Session).where(Session.user_id == user_id)
        if keep is not None:
            stmt = stmt.where(Session.token_hash != keep)
        res = await self.session.execute(stmt)
        return res.rowcount or 0


class PasswordResetRepository:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def add(self, token_hash: str, user_id: str, at: datetime, expires: datetime) -> None:
        self.session.add(PasswordReset(token_hash=token_hash, user_id=user_id, created_at=at,
                                       expires_at=expires))
        await self.session.flush()

    async def get(self, token_hash: str) -> PasswordReset | None:
        stmt = (sa.select(PasswordReset).where(PasswordReset.token_hash == token_hash)
                .with_for_update())
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def spend_all(self, user_id: str, at: datetime) -> None:
        """Every open reset link of the user is void (a password was just set)."""
        await self.session.execute(sa.update(PasswordReset).where(
            PasswordReset.user_id == user_id, PasswordReset.used_at.is_(None)).values(used_at=at))


class AuditRepository:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def lock_chain(self) -> None:
        await self.session.execute(sa.text("SELECT pg_advisory_xact_lock(77001)"))

    async def last_hash(self) -> str | None:
        stmt = sa.select(AuditEntry.hash).order_by(AuditEntry.id.desc()).limit(1)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def page(self, limit: int, before_id: int | None) -> list[AuditEntry]:
        stmt = sa.select(AuditEntry)
        if before_id:
            stmt = stmt.where(AuditEntry.id < before_id)
        stmt = stmt.order_by(AuditEntry.id.desc()).limit(limit + 1)
        return list((await self.session.execute(stmt)).scalars())

    async def all_in_order(self):
        return await self.session.stream_scalars(sa.select(AuditEntry).order_by(AuditEntry.id))
