"""The tickets service's public shapes: tickets, messages, statuses."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from contracts.common import AuthorRole, MessageOrigin, TicketSource, TicketStatus
from contracts.public.billing import InvoiceStatus
from contracts.public.common import Money, Strict, Whole
from contracts.public.subscriptions import SubscriptionStatus
from contracts.text import VisibleText

# Ticket text: invisible characters removed, at least one visible character (contracts.text).
Subject = VisibleText(3, 120)
Body = VisibleText(1, 4000)

__all__ = ["AdminTicketEnvelope", "AdminTicketList", "AdminTicketOut", "AssignBody",
           "AssigneeOut", "AttachmentEnvelope", "AttachmentOut", "CannedReplyCreate",
           "CannedReplyDeleted",
           "CannedReplyEnvelope", "CannedReplyList", "CannedReplyOut", "CannedReplyUpdate",
           "CardInvoiceOut", "CardSubscriptionOut", "CustomerCardOut",
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


class AttachmentEnvelope(BaseModel):
    """An upload's answer: its (first) file and the message that carries its files."""

    attachment: AttachmentOut
    message: MessageOut


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


class CardSubscriptionOut(BaseModel):
    status: SubscriptionStatus
    plan: str = Field(description="the plan's name (its id when the catalogue has no such plan)")
    expires_at: datetime
    devices: int


class CardInvoiceOut(BaseModel):
    id: str
    status: InvoiceStatus
    amount_usd: Money
    created_at: datetime


class CustomerCardOut(BaseModel):
    """The ticket's customer as the support desk shows them (the gateway adds it; a part that
    could not be read is null)."""

    id: str
    email: str | None = Field(description="null for an account made in Telegram")
    telegram: str | None = Field(description="the linked Telegram username (`@name`), or null")
    registered_at: datetime | None
    subscription: CardSubscriptionOut | None = Field(description="the newest one; null: none")
    last_invoices: list[CardInvoiceOut] | None = Field(description="the last 3, newest first")
    open_tickets: int | None


class AdminTicketOut(TicketOut):
    user_id: str
    assignee: AssigneeOut | None = None
    first_response_at: datetime | None = None
    rating_comment: str | None = None
    customer: CustomerCardOut | None = Field(None, description="the gateway's view of the "
                                             "customer; null from the tickets service")


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


