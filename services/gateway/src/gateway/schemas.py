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
    id: int | None = Field(None, description="the linked Telegram user's id")


class UserOut(BaseModel):
    id: str
    email: str | None = Field(description="null for an account made in the Telegram bot")
    role: Role
    created_at: datetime
    telegram: TelegramInfo


class UserEnvelope(BaseModel):
    user: UserOut


class CsrfOut(BaseModel):
    csrf_token: str = Field(description="Send as `X-CSRF-Token` with a cookie-authenticated "
                                        "write that is not JSON (a multipart upload)")


class TelegramWidgetBody(BaseModel):
    """The fields the Telegram Login Widget gives (as it gives them: unknown ones are refused,
    since they would be part of the signed data)."""

    model_config = {"extra": "forbid"}
    id: int = Field(ge=1, lt=2**63)
    first_name: str | None = Field(None, max_length=256)
    last_name: str | None = Field(None, max_length=256)
    username: str | None = Field(None, max_length=64)
    photo_url: str | None = Field(None, max_length=2048)
    auth_date: int = Field(ge=0, lt=2**63)
    hash: str = Field(min_length=64, max_length=64, pattern=r"^[0-9a-fA-F]{64}$")

    def signed_fields(self) -> dict[str, str]:
        """The fields as the widget signed them (those it sent, as text)."""
        return {k: str(v) for k, v in self.model_dump(exclude_none=True).items()}


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
