"""Identity: registration, sign-in, sessions, roles and blocking, and the admin audit log."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.identity import UserBlockedV1, UserRegisteredV1, UserUnblockedV1
from gateway.models import AuditEntry, Session, User, outbox
from gateway.repository import (
    AuditRepository,
    SessionReader,
    SessionRepository,
    SignedInUser,
    UserRepository,
)
from gateway.security import hash_password, new_session_token, token_hash, verify_password
from runtime.db import Database
from runtime.errors import Conflict, NotFound, Unauthenticated
from runtime.outbox import Outbox

events = Outbox(outbox, producer="gateway")

GENESIS = "0" * 64


def now() -> datetime:
    return datetime.now(UTC)


@dataclass
class SignedIn:
    user: User
    token: str


class AuthService:
    def __init__(self, session_ttl_days: int, admin_email: str | None):
        self.ttl = timedelta(days=session_ttl_days)
        self.admin_email = (admin_email or "").strip().lower() or None

    async def register(self, s: AsyncSession, email: str, password: str, ip: str | None,
                       user_agent: str | None) -> SignedIn:
        email = email.strip()
        repo = UserRepository(s)
        if await repo.by_email(email):
            raise Conflict("Email already registered", {"field": "email"})
        role = "ADMIN" if self.admin_email and email.lower() == self.admin_email else "USER"
        user = User(id=uuid.uuid4().hex, email=email, password_hash=hash_password(password),
                    role=role, is_blocked=False, created_at=now(), telegram_linked=False)
        s.add(user)
        try:
            await s.flush()
        except IntegrityError as exc:
            raise Conflict("Email already registered", {"field": "email"}) from exc
        await events.add(s, UserRegisteredV1(user_id=user.id, email=user.email, role=role,
                                             registered_at=user.created_at))
        token = await self._new_session(s, user, ip, user_agent)
        return SignedIn(user, token)

    async def login(self, s: AsyncSession, email: str, password: str, ip: str | None,
                    user_agent: str | None) -> SignedIn:
        user = await UserRepository(s).by_email(email.strip())
        ok = verify_password(user.password_hash if user else None, password)
        if not ok or user is None:
            raise Unauthenticated("Invalid email or password")
        token = await self._new_session(s, user, ip, user_agent)
        return SignedIn(user, token)

    async def _new_session(self, s: AsyncSession, user: User, ip, user_agent) -> str:
        token = new_session_token()
        ts = now()
        s.add(Session(token_hash=token_hash(token), user_id=user.id, created_at=ts,
                      expires_at=ts + self.ttl, ip=ip, user_agent=(user_agent or "")[:300]))
        await s.flush()
        return token

    async def user_for_token(self, db: Database, token: str) -> SignedInUser | None:
        return await SessionReader(db).user_for_token(token_hash(token), now())

    async def logout(self, s: AsyncSession, token: str) -> None:
        await SessionRepository(s).delete(token_hash(token))


class UserAdminService:
    async def set_blocked(self, s: AsyncSession, user_id: str, blocked: bool,
                          actor_id: str) -> User:
        user = await UserRepository(s).get(user_id, for_update=True)
        if user is None:
            raise NotFound("User not found")
        if user.is_blocked == blocked:
            raise Conflict("User is already " + ("blocked" if blocked else "unblocked"))
        user.is_blocked = blocked
        if blocked:
            await SessionRepository(s).delete_for_user(user.id)
            await events.add(s, UserBlockedV1(user_id=user.id, blocked_at=now(),
                                              actor_id=actor_id))
        else:
            await events.add(s, UserUnblockedV1(user_id=user.id, unblocked_at=now(),
                                                actor_id=actor_id))
        return user

    async def set_role(self, s: AsyncSession, user_id: str, role: str) -> User:
        user = await UserRepository(s).get(user_id, for_update=True)
        if user is None:
            raise NotFound("User not found")
        user.role = role
        return user


def entry_hash(prev_hash: str, fields: dict) -> str:
    body = orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(prev_hash.encode() + body).hexdigest()


def _hashed_fields(e: AuditEntry) -> dict:
    return {"at": e.at.astimezone(UTC).isoformat(), "actor_id": e.actor_id,
            "actor_role": e.actor_role, "action": e.action, "target_type": e.target_type,
            "target_id": e.target_id, "request_id": e.request_id, "outcome": e.outcome,
            "details": e.details}


class AuditService:
    """Appends to and verifies the hash-chained admin audit log."""

    async def record(self, s: AsyncSession, *, actor_id: str, actor_role: str, action: str,
                     target_type: str, target_id: str, request_id: str | None, outcome: str,
                     details: dict | None = None) -> AuditEntry:
        repo = AuditRepository(s)
        await repo.lock_chain()
        prev = await repo.last_hash() or GENESIS
        entry = AuditEntry(at=now(), actor_id=actor_id,
                           actor_role=actor_role, action=action, target_type=target_type,
                           target_id=target_id, request_id=request_id, outcome=outcome,
                           details=details, prev_hash=prev, hash="")
        entry.hash = entry_hash(prev, _hashed_fields(entry))
        s.add(entry)
        await s.flush()
        return entry

    async def verify(self, s: AsyncSession) -> tuple[bool, int, int | None]:
        """(ok, entries checked, id of the first broken entry)."""
        prev = GENESIS
        count = 0
        async for e in await AuditRepository(s).all_in_order():
            count += 1
            if e.prev_hash != prev or entry_hash(prev, _hashed_fields(e)) != e.hash:
                return False, count, e.id
            prev = e.hash
        return True, count, None


audit_service = AuditService()
user_admin_service = UserAdminService()
