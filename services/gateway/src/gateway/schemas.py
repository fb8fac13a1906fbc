"""The gateway's own public shapes of `/api/v1`: accounts, users and the audit log.

The shapes it shares with a service (plans, invoices, tickets, subscriptions, statuses) are in
`contracts.public`, the one place both read them from.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, EmailStr, Field

from contracts.common import Role
from contracts.public.common import Strict, Text


class Credentials(Strict):
    email: EmailStr = Field(max_length=254)
    password: str = Field(min_length=10, max_length=256)


class RegisterBody(Credentials):
    ref: Text | None = Field(None, max_length=64, description=(
        "a referral code (from `/r/<code>`); an unknown code is ignored, never an error, and "
        "one's own is never a referral"))


class LoginBody(Strict):
    email: str = Field(min_length=3, max_length=254)
    password: str = Field(min_length=1, max_length=256)


class TelegramInfo(BaseModel):
    linked: bool
    username: str | None


class UserOut(BaseModel):
    id: str
    email: str
    role: Role
    created_at: datetime
    telegram: TelegramInfo


class UserEnvelope(BaseModel):
    user: UserOut


class AdminUserOut(UserOut):
    is_blocked: bool


class AdminUserEnvelope(BaseModel):
    user: AdminUserOut


class AdminUserList(BaseModel):
    users: list[AdminUserOut]
    next_cursor: str | None


class RoleBody(Strict):
    role: Role


class AuditEntryOut(BaseModel):
    id: int
    at: datetime
    actor_id: str
    actor_role: str
    action: str
    target_type: str
    target_id: str
    request_id: str | None
    outcome: str
    details: dict | None
    hash: str


class AuditLog(BaseModel):
    entries: list[AuditEntryOut]
    next_cursor: str | None
