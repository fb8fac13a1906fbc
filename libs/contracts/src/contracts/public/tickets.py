"""The tickets service's public shapes: tickets, messages, statuses."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from contracts.common import AuthorRole, MessageOrigin, TicketSource, TicketStatus
from contracts.public.common import Strict
from contracts.text import VisibleText

# Ticket text: invisible characters removed, at least one visible character (contracts.text).
Subject = VisibleText(3, 120)
Body = VisibleText(1, 4000)

__all__ = ["AdminTicketEnvelope", "AdminTicketList", "AdminTicketOut", "MessageCreate",
           "MessageEnvelope", "MessageOut", "TicketCreate", "TicketEnvelope", "TicketList",
           "TicketOut", "TicketStatus"]


class TicketCreate(Strict):
    subject: Subject
    body: Body


class MessageCreate(Strict):
    body: Body


class MessageOut(BaseModel):
    id: str
    author_role: AuthorRole
    body: str
    origin: MessageOrigin
    created_at: datetime


class TicketOut(BaseModel):
    id: str
    subject: str
    status: TicketStatus
    source: TicketSource
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


