"""Ticket lifecycle: the state machine, threads, and the events other contexts see."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from contracts.tickets import (
    MessageAddedV1,
    TicketClosedV1,
    TicketMessage,
    TicketOpenedV1,
    TicketStatusChangedV1,
)
from runtime.errors import IllegalTransition, NotFound
from runtime.identity import Identity
from runtime.logging import get_logger
from runtime.outbox import Outbox
from tickets.models import Message, Ticket, outbox
from tickets.repository import TicketRepository

log = get_logger(__name__)

OPEN, PENDING_USER, PENDING_SUPPORT, CLOSED = "OPEN", "PENDING_USER", "PENDING_SUPPORT", "CLOSED"

# status after a message from (author) arrives on a ticket in (status); missing = refused
_AFTER_MESSAGE = {
    ("USER", OPEN): OPEN,
    ("USER", PENDING_USER): PENDING_SUPPORT,
    ("USER", PENDING_SUPPORT): PENDING_SUPPORT,
    ("USER", CLOSED): PENDING_SUPPORT,  # a customer message reopens a closed ticket
    ("SUPPORT", OPEN): PENDING_USER,
    ("SUPPORT", PENDING_USER): PENDING_USER,
    ("SUPPORT", PENDING_SUPPORT): PENDING_USER,
}

events = Outbox(outbox, producer="tickets")


def now() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


def status_after_message(author: str, status: str) -> str:
    nxt = _AFTER_MESSAGE.get((author, status))
    if nxt is None:
        raise IllegalTransition("ticket", status, f"{author} message")
    return nxt


class TicketService:
    async def open(self, session: AsyncSession, *, user_id: str, subject: str, body: str,
                   source: str = "WEB", origin: str = "WEB", external_ref: str | None = None,
                   user_label: str | None = None) -> Ticket:
        ts = now()
        ticket = Ticket(id=new_id(), user_id=user_id, subject=subject, status=OPEN, source=source,
                        seq=1, created_at=ts, last_message_at=ts)
        message = Message(id=new_id(), ticket_id=ticket.id, author_role="USER", origin=origin,
                          body=body, created_at=ts, external_ref=external_ref)
        session.add(ticket)
        await session.flush()
        session.add(message)
        await session.flush()
        await events.add(session, TicketOpenedV1(
            ticket_id=ticket.id, user_id=user_id, subject=subject, source=source, status=OPEN,
            message=TicketMessage(message_id=message.id, author_role="USER", origin=origin,
                                  body=body, created_at=ts),
            seq=1, opened_at=ts, user_label=user_label,
        ))
        return ticket

    async def get_visible(self, session: AsyncSession, identity: Identity, ticket_id: str, *,
                          staff_view: bool = False, for_update: bool = False) -> Ticket:
        """The ticket if this identity may see it; another user's ticket is simply not found."""
        ticket = await TicketRepository(session).get(ticket_id, for_update=for_update)
        if ticket is None or (not staff_view and ticket.user_id != identity.user_id):
            raise NotFound("Ticket not found")
        return ticket

    async def add_message(self, session: AsyncSession, ticket: Ticket, *, author: str, origin: str,
                          body: str, external_ref: str | None = None) -> Message:
        new_status = status_after_message(author, ticket.status)
        ts = now()
        message = Message(id=new_id(), ticket_id=ticket.id, author_role=author, origin=origin,
                          body=body, created_at=ts, external_ref=external_ref)
        session.add(message)
        old_status = ticket.status
        ticket.status = new_status
        ticket.last_message_at = ts
        if new_status != CLOSED:
            ticket.closed_at = None
        ticket.seq += 1
        await session.flush()
        await events.add(session, MessageAddedV1(
            ticket_id=ticket.id, user_id=ticket.user_id, subject=ticket.subject,
            message_id=message.id, author_role=author, origin=origin, body=body, created_at=ts,
            ticket_status=new_status, seq=ticket.seq,
        ))
        if new_status != old_status:
            ticket.seq += 1
            await events.add(session, TicketStatusChangedV1(
                ticket_id=ticket.id, user_id=ticket.user_id, from_status=old_status,
                to_status=new_status, changed_at=ts, seq=ticket.seq,
            ))
        return message

    async def close(self, session: AsyncSession, ticket: Ticket, *, by_role: str) -> Ticket:
        if ticket.status == CLOSED:
            raise IllegalTransition("ticket", CLOSED, CLOSED)
        ts = now()
        old = ticket.status
        ticket.status = CLOSED
        ticket.closed_at = ts
        ticket.seq += 1
        await events.add(session, TicketStatusChangedV1(
            ticket_id=ticket.id, user_id=ticket.user_id, from_status=old, to_status=CLOSED,
            changed_at=ts, seq=ticket.seq,
        ))
        ticket.seq += 1
        await events.add(session, TicketClosedV1(
            ticket_id=ticket.id, user_id=ticket.user_id, closed_by_role=by_role, closed_at=ts,
            seq=ticket.seq,
        ))
        await session.flush()
        return ticket


ticket_service = TicketService()
