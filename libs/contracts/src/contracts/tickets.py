"""tickets.* events, produced by the tickets service.

`seq` increases by one with every event of a ticket, so consumers can apply them in order.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from contracts.common import AuthorRole, MessageOrigin, TicketSource, TicketStatus
from contracts.envelope import EventPayload


class TicketAttachment(BaseModel):
    """A file on a message; its bytes are read from the tickets service by id."""

    attachment_id: str
    name: str
    content_type: str
    size: int


class TicketMessage(BaseModel):
    message_id: str
    author_role: AuthorRole
    origin: MessageOrigin
    body: str
    created_at: datetime
    attachments: list[TicketAttachment] = Field(default_factory=list)


class TicketOpenedV1(EventPayload):
    event_type = "tickets.ticket.opened"
    ticket_id: str
    user_id: str
    subject: str
    source: TicketSource
    status: TicketStatus
    message: TicketMessage
    seq: int
    opened_at: datetime
    user_label: str | None = None


class MessageAddedV1(EventPayload):
    event_type = "tickets.message.added"
    ticket_id: str
    user_id: str
    subject: str
    message_id: str
    author_role: AuthorRole
    origin: MessageOrigin
    body: str
    created_at: datetime
    ticket_status: TicketStatus
    seq: int
    # The canned reply's name when the message is one (`/r <name>` in the topic).
    canned: str | None = None
    attachments: list[TicketAttachment] = Field(default_factory=list)


class TicketStatusChangedV1(EventPayload):
    event_type = "tickets.ticket.status_changed"
    ticket_id: str
    user_id: str
    from_status: TicketStatus
    to_status: TicketStatus
    changed_at: datetime
    seq: int


class TicketClosedV1(EventPayload):
    event_type = "tickets.ticket.closed"
    ticket_id: str
    user_id: str
    closed_by_role: str
    closed_at: datetime
    seq: int


class NoteAddedV1(EventPayload):
    """An internal note on a ticket: for staff only, never for the customer's chat."""

    event_type = "tickets.note.added"
    ticket_id: str
    user_id: str
    message_id: str
    origin: MessageOrigin
    body: str
    author_name: str | None = None
    created_at: datetime
    seq: int


class TicketAssignedV1(EventPayload):
    """A ticket's assignee changed: `assignee_id` is a staff user id, or `tg:<telegram id>` for
    an operator known only in the support chat; None when unassigned."""

    event_type = "tickets.ticket.assigned"
    ticket_id: str
    user_id: str
    assignee_id: str | None
    assignee_name: str | None = None
    assigned_at: datetime
    seq: int
