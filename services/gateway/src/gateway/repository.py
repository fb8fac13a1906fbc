"""Queries on the identity schema."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.models import AuditEntry, Session, User
from runtime.db import Database
from runtime.repository import Repository


@dataclass(frozen=True, slots=True)
class SignedInUser:
    """The user behind a live session, as every request sees it (read-only)."""

    id: str
    email: str
    role: str
    is_blocked: bool
    created_at: datetime
    telegram_linked: bool
    telegram_username: str | None


class SessionReader:
    """The session lookup every authenticated request makes: one statement on the driver's
    connections (`Database.fetchrow`), no ORM and no transaction, since it only reads."""

    QUERY = (
        "SELECT u.id, u.email, u.role, u.is_blocked, u.created_at, u.telegram_linked,"
        " u.telegram_username FROM users u JOIN sessions s ON s.user_id = u.id"
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

    async def link_telegram(self, user_id: str, username: str | None) -> None:
        """The projection of the telegram service's `AccountLinkedV1`."""
        await self.session.execute(sa.update(User).where(User.id == user_id).values(
            telegram_linked=True, telegram_username=username))

    async def emails(self, user_ids: set[str]) -> dict[str, str]:
        if not user_ids:
            return {}
        rows = await self.session.execute(sa.select(User.id, User.email)
                                          .where(User.id.in_(user_ids)))
        return dict(rows.tuples().all())

    async def search(self, q: str | None, limit: int, cursor: str | None) -> list[User]:
        stmt = sa.select(User)
        if q:
            escaped = q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            like = f"%{escaped}%"
            stmt = stmt.where(sa.or_(sa.func.lower(User.email).like(like), User.id == q))
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
