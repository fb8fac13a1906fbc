"""Identity: registration, sign-in (password or Telegram), sessions, password resets, roles and
blocking, and the admin audit log."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, timedelta

import orjson
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from contracts import events_of
from contracts.identity import (
    UserBlockedV1,
    UserRegisteredV1,
    UserRoleChangedV1,
    UserUnblockedV1,
)
from contracts.telegram import AccountCreatedV1
from gateway.models import AuditEntry, Session, User, outbox
from gateway.repository import (
    AuditRepository,
    PasswordResetRepository,
    SessionReader,
    SessionRepository,
    SignedInUser,
    UserRepository,
)
from gateway.security import (
    hash_password,
    new_session_token,
    password_problem,
    token_hash,
    verify_password,
)
from runtime.clock import now
from runtime.db import Database
from runtime.errors import Conflict, Forbidden, NotFound, Unauthenticated, ValidationFailed
from runtime.outbox import Outbox
from runtime.pagination import decode_id_cursor

events = Outbox(outbox, producer="gateway", publishes=events_of("identity"))

GENESIS = "0" * 64
PASSWORD_RESET_TTL = timedelta(minutes=30)


def check_new_password(password: str, email: str | None, field: str = "password") -> None:
    """Refuse a password that is too short, common, or the account's email (400)."""
    problem = password_problem(password, email)
    if problem:
        reason, message = problem
        raise ValidationFailed(message, {"field": field, "reason": reason})


@dataclass
class SignedIn:
    user: User
    token: str


class AuthService:
    def __init__(self, session_ttl_days: int, admin_email: str | None):
        self.ttl = timedelta(days=session_ttl_days)
        self.admin_email = (admin_email or "").strip().lower() or None

    async def register(self, s: AsyncSession, email: str, password: str, ip: str | None,
                       user_agent: str | None, ref: str | None = None) -> SignedIn:
        """A new account, signed in. `ref` (a referral code) goes to billing in the event,
        which records the referral or ignores a code it does not know."""
        email = email.strip()
        repo = UserRepository(s)
        check_new_password(password, email)
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
                                             registered_at=user.created_at,
                                             referral_code=(ref or "").strip() or None))
        token = await self._new_session(s, user, ip, user_agent)
        return SignedIn(user, token)

    async def login(self, s: AsyncSession, email: str, password: str, ip: str | None,
                    user_agent: str | None) -> SignedIn:
        user = await UserRepository(s).by_email(email.strip())
        ok = verify_password(user.password_hash if user else None, password)
        if not ok or user is None:
            raise Unauthenticated("Invalid email or password")
        if user.is_blocked:  # said only to someone who knows the password
            raise Forbidden("Account blocked")
        token = await self._new_session(s, user, ip, user_agent)
        return SignedIn(user, token)

    async def telegram_sign_in(self, s: AsyncSession, account: dict, ip: str | None,
                               user_agent: str | None) -> SignedIn:
        """A session for the account the telegram service vouches for (`user_id`,
        `telegram_user_id`, `telegram_username`). An account made from Telegram whose creation
        event has not arrived yet is made now (the event announces it when it comes)."""
        repo = UserRepository(s)
        user = await repo.get(account["user_id"])
        if user is None:
            await repo.add_telegram_user(account["user_id"], account["telegram_user_id"],
                                         account.get("telegram_username"), now())
            user = await repo.get(account["user_id"])
        if user is None:
            raise Unauthenticated("No account for this Telegram user")
        if user.is_blocked:
            raise Forbidden("Account blocked")
        token = await self._new_session(s, user, ip, user_agent)
        return SignedIn(user, token)

    async def start_password_reset(self, s: AsyncSession, email: str) -> tuple[User, str] | None:
        """A reset token for the account of `email` when it has Telegram linked (the only way
        the link can reach its owner); None otherwise, and the caller says the same either
        way."""
        user = await UserRepository(s).by_email(email.strip())
        if user is None or not user.telegram_linked or user.is_blocked:
            return None
        token = new_session_token()
        ts = now()
        await PasswordResetRepository(s).add(token_hash(token), user.id, ts,
                                             ts + PASSWORD_RESET_TTL)
        return user, token

    async def reset_password(self, s: AsyncSession, token: str, new: str) -> User:
        """Set the password a valid reset link allows; the link and every other open one are
        spent and every session of the account ends."""
        repo = PasswordResetRepository(s)
        row = await repo.get(token_hash(token))
        if row is None or row.used_at is not None or row.expires_at <= now():
            raise ValidationFailed("This reset link is invalid, used or expired",
                                   {"field": "token", "reason": "invalid"})
        user = await UserRepository(s).get(row.user_id, for_update=True)
        if user is None or user.is_blocked:
            raise ValidationFailed("This reset link is invalid, used or expired",
                                   {"field": "token", "reason": "invalid"})
        check_new_password(new, user.email)
        user.password_hash = hash_password(new)
        await repo.spend_all(user.id, now())
        await SessionRepository(s).delete_for_user(user.id)
        return user

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

    async def change_password(self, s: AsyncSession, user_id: str, current: str, new: str,
                              keep_token: str) -> None:
        """Check the current password, store the new one, sign out every other session."""
        user = await UserRepository(s).get(user_id, for_update=True)
        if user is None or not verify_password(user.password_hash, current):
            raise ValidationFailed("The current password is wrong", {"field": "current_password"})
        check_new_password(new, user.email, field="new_password")
        user.password_hash = hash_password(new)
        await SessionRepository(s).delete_for_user(user.id, keep=token_hash(keep_token))


async def telegram_account_created(s: AsyncSession, event: AccountCreatedV1) -> None:
    """The account the bot linked a new Telegram user to (made already if they signed in on
    the web first), announced once with its referral code."""
    await UserRepository(s).add_telegram_user(event.user_id, event.telegram_user_id,
                                              event.telegram_username, event.created_at)
    await events.add(s, UserRegisteredV1(user_id=event.user_id, email="", role="USER",
                                         registered_at=event.created_at,
                                         referral_code=event.referral_code))


class UserAdminService:
    """Blocking and roles, for the API and the web panel alike. No admin can lock the admins
    out: nobody changes their own role or blocks themself, and the last active ADMIN is never
    demoted or blocked. Every change first locks the active admins' rows (in id order), so two
    admins demoting each other at once are serialized and the second one is refused."""

    async def _guard(self, s: AsyncSession, user_id: str, actor_id: str, removes_admin: bool,
                     on_self: str, on_last: str) -> User:
        """The target row, locked, once the rules above hold (else 409 with these messages)."""
        repo = UserRepository(s)
        admins = await repo.lock_active_admins()
        user = await repo.get(user_id, for_update=True)
        if user is None:
            raise NotFound("User not found")
        if user.id == actor_id:
            raise Conflict(on_self, {"reason": "self"})
        if removes_admin and user.id in admins and len(admins) <= 1:
            raise Conflict(on_last + ": make another user an admin first",
                           {"reason": "last_admin"})
        return user

    async def set_blocked(self, s: AsyncSession, user_id: str, blocked: bool,
                          actor_id: str) -> User:
        verb = "block" if blocked else "unblock"
        user = await self._guard(s, user_id, actor_id, blocked, f"You cannot {verb} yourself",
                                 "The last active admin cannot be blocked")
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

    async def set_role(self, s: AsyncSession, user_id: str, role: str, actor_id: str) -> User:
        user = await self._guard(s, user_id, actor_id, role != "ADMIN",
                                 "You cannot change your own role",
                                 "The last active admin cannot be demoted")
        user.role = role
        await events.add(s, UserRoleChangedV1(user_id=user.id, role=role, changed_at=now(),
                                              actor_id=actor_id))
        return user

    async def search(self, db: Database, q: str | None, limit: int,
                     cursor: str | None) -> tuple[list[User], str | None]:
        """A page of users (by email prefix or id) and the next page's cursor."""
        async with db.transaction() as s:
            users = await UserRepository(s).search(q, limit, decode_id_cursor(cursor))
        return users[:limit], (users[limit - 1].id if len(users) > limit else None)

    async def emails(self, db: Database, user_ids: set[str]) -> dict[str, str]:
        async with db.transaction() as s:
            return await UserRepository(s).emails(user_ids)

    async def audit_page(self, db: Database, before: int | None,
                         limit: int) -> tuple[list[AuditEntry], str | None]:
        async with db.transaction() as s:
            rows = await AuditRepository(s).page(limit, before)
        return rows[:limit], (str(rows[limit - 1].id) if len(rows) > limit else None)

    async def make_admin(self, s: AsyncSession, user: User, actor_id: str = "cli") -> list[str]:
        """Promote `user` to an active ADMIN (the `create-admin` command): unblocks them too,
        each change audited. Returns the audit actions recorded."""
        done: dict[str, dict] = {}
        if user.is_blocked:
            user.is_blocked = False
            await events.add(s, UserUnblockedV1(user_id=user.id, unblocked_at=now(),
                                                actor_id=actor_id))
            done["user.unblock"] = {"via": "create-admin"}
        if user.role != "ADMIN":
            user.role = "ADMIN"
            done["user.role"] = {"via": "create-admin", "role": "ADMIN"}
        # told every time, so services that keep roles learn of an admin made before they did
        await events.add(s, UserRoleChangedV1(user_id=user.id, role="ADMIN", changed_at=now(),
                                              actor_id=actor_id))
        for action, details in done.items():
            await audit_service.record(
                s, actor_id=actor_id, actor_role="SYSTEM", action=action, target_type="user",
                target_id=user.id, request_id=None, outcome="success", details=details)
        return list(done)


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
