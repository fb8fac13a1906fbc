"""Request and response models of the tickets internal API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from contracts.common import TicketStatus


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class TicketCreate(Strict):
    subject: str = Field(min_length=3, max_length=120)
    body: str = Field(min_length=1, max_length=4000)


class MessageCreate(Strict):
    body: str = Field(min_length=1, max_length=4000)


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
