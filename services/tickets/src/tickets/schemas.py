"""Request and response models of the tickets internal API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from contracts.common import TicketStatus
from runtime.text import VisibleText

# Ticket text: invisible characters removed, at least one visible character (runtime.text).
Subject = VisibleText(3, 120)
Body = VisibleText(1, 4000)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


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
    messages: list[MessageOut] = []


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
