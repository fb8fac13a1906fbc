"""Public request/response models of `/api/v1` (the contract in docs/02-api)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from runtime.text import VisibleText

Role = Literal["USER", "SUPPORT", "ADMIN"]
TicketStatus = Literal["OPEN", "PENDING_USER", "PENDING_SUPPORT", "CLOSED"]

# Ticket text: invisible characters removed, at least one visible character (runtime.text).
Subject = VisibleText(3, 120)
Body = VisibleText(1, 4000)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Credentials(Strict):
    email: EmailStr = Field(max_length=254)
    password: str = Field(min_length=10, max_length=256)


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


class TelegramLinkOut(BaseModel):
    url: str
    expires_at: datetime


class TicketCreate(Strict):
    subject: Subject
    body: Body


class MessageCreate(Strict):
    body: Body


class MessageOut(BaseModel):
    id: str
    author_role: Literal["USER", "SUPPORT"]
    body: str
    origin: Literal["WEB", "TELEGRAM", "ADMIN"]
    created_at: datetime


class TicketOut(BaseModel):
    id: str
    subject: str
    status: TicketStatus
    source: Literal["WEB", "TELEGRAM"]
    created_at: datetime
    last_message_at: datetime
    messages: list[MessageOut]


class AdminTicketOut(TicketOut):
    user_id: str


class TicketEnvelope(BaseModel):
    ticket: TicketOut


class AdminTicketEnvelope(BaseModel):
    ticket: AdminTicketOut


class MessageEnvelope(BaseModel):
    message: MessageOut


class TicketList(BaseModel):
    tickets: list[TicketOut]
    next_cursor: str | None


class AdminTicketList(BaseModel):
    tickets: list[AdminTicketOut]
    next_cursor: str | None


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


class ErrorOut(BaseModel):
    code: str
    message: str
    details: object | None = None


class WebhookAck(BaseModel):
    ok: bool
