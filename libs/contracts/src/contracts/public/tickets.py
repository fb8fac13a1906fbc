"""The tickets service's public shapes: tickets, messages, statuses."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from contracts.common import AuthorRole, MessageOrigin, TicketSource, TicketStatus
from contracts.public.common import Strict, Whole
from contracts.text import VisibleText

# Ticket text: invisible characters removed, at least one visible character (contracts.text).
Subject = VisibleText(3, 120)
Body = VisibleText(1, 4000)

__all__ = ["AdminTicketEnvelope", "AdminTicketList", "AdminTicketOut", "AssignBody",
           "AssigneeOut", "AttachmentOut", "CannedReplyCreate", "CannedReplyDeleted",
           "CannedReplyEnvelope", "CannedReplyList", "CannedReplyOut", "CannedReplyUpdate",
           "MessageCreate", "MessageEnvelope", "MessageOut", "NoteCreate", "RatingCreate",
           "TicketCreate", "TicketEnvelope", "TicketList", "TicketOut", "TicketStatus"]

MessageKind = Literal["MESSAGE", "NOTE"]
CannedName = VisibleText(1, 64)


class TicketCreate(Strict):
    subject: Subject
    body: Body


class MessageCreate(Strict):
    body: Body


class AttachmentOut(BaseModel):
    id: str
    name: str
    content_type: str
    size: int


class MessageOut(BaseModel):
    id: str
    author_role: AuthorRole
    body: str
    origin: MessageOrigin
    created_at: datetime
    # NOTE (an internal note) appears in staff views only.
    kind: MessageKind = "MESSAGE"
    attachments: list[AttachmentOut] = Field(default_factory=list)


class TicketOut(BaseModel):
    id: str
    subject: str
    status: TicketStatus
    source: TicketSource
    created_at: datetime
    last_message_at: datetime
    messages: list[MessageOut]
    rating: int | None = None  # CSAT, 1-5, once the customer rated the closed ticket


class AssigneeOut(BaseModel):
    id: str  # a staff user id, or `tg:<telegram id>` for an operator of the support chat
    name: str | None = None


class AdminTicketOut(TicketOut):
    user_id: str
    assignee: AssigneeOut | None = None
    first_response_at: datetime | None = None
    rating_comment: str | None = None


class RatingCreate(Strict):
    score: Whole = Field(ge=1, le=5)
    comment: VisibleText(1, 1000) | None = None


class NoteCreate(Strict):
    body: Body


class AssignBody(Strict):
    user_id: str | None


class CannedReplyCreate(Strict):
    name: CannedName
    body_en: Body
    body_ru: Body


class CannedReplyUpdate(Strict):
    name: CannedName | None = None
    body_en: Body | None = None
    body_ru: Body | None = None


class CannedReplyOut(BaseModel):
    id: str
    name: str
    body_en: str
    body_ru: str
    created_at: datetime
    updated_at: datetime


class CannedReplyEnvelope(BaseModel):
    canned_reply: CannedReplyOut


class CannedReplyList(BaseModel):
    canned_replies: list[CannedReplyOut]


class CannedReplyDeleted(BaseModel):
    deleted: bool


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


