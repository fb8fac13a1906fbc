"""The support desk on top of the ticket lifecycle: internal notes, assignment, canned replies,
and the operators' commands from a ticket's support topic.

A note is a ticket message of kind NOTE: staff views show it, the customer's never do, and it is
announced as `tickets.note.added` (never `tickets.message.added`), so no consumer can take it
for a message to the customer.
"""

from __future__ import annotations

import asyncio

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.telegram import SupportCommandReceivedV1
from contracts.tickets import NoteAddedV1
from runtime.clock import now
from runtime.db import Database
from runtime.errors import Conflict, NotFound
from runtime.logging import get_logger
from tickets.metrics import OPEN_TICKETS
from tickets.models import CannedReply, Message, Ticket
from tickets.repository import CannedReplyRepository, TicketRepository
from tickets.service import (
    CLOSED,
    events,
    language_of,
    new_id,
    readable,
    telegram_ref,
    ticket_service,
)

log = get_logger(__name__)

__all__ = ["SupportDesk", "language_of", "operator_ref", "sample_open_tickets", "support_desk"]

AGE_EDGES_HOURS = (1, 4, 24)
AGE_LABELS = ("lt_1h", "1h_4h", "4h_24h", "gt_24h")


def operator_ref(telegram_id: int) -> str:
    """The assignee id of an operator known only in the support chat."""
    return f"tg:{telegram_id}"


def canned_body(reply: CannedReply, language: str | None) -> str:
    return reply.body_ru if language == "ru" else reply.body_en


class SupportDesk:
    async def add_note(self, session: AsyncSession, ticket: Ticket, *, body: str, origin: str,
                       author_id: str | None = None, author_name: str | None = None,
                       external_ref: str | None = None) -> Message:
        """An internal note: the status stays, the customer hears nothing."""
        ts = now()
        note = Message(id=new_id(), ticket_id=ticket.id, author_role="SUPPORT", origin=origin,
                       body=body, created_at=ts, kind="NOTE", author_name=author_name,
                       external_ref=external_ref)
        session.add(note)
        ticket.seq += 1
        await session.flush()
        await events.add(session, NoteAddedV1(
            ticket_id=ticket.id, user_id=ticket.user_id, message_id=note.id, origin=origin,
            body=body, author_name=author_name or author_id, created_at=ts, seq=ticket.seq))
        return note

    async def assign(self, session: AsyncSession, ticket: Ticket, assignee_id: str | None,
                     assignee_name: str | None = None) -> Ticket:
        return await ticket_service.assign(session, ticket, assignee_id, assignee_name)

    async def rate(self, session: AsyncSession, ticket: Ticket, score: int,
                   comment: str | None) -> Ticket:
        """The customer's CSAT score, once, on a closed ticket (a reopened ticket keeps the
        score it was given)."""
        if ticket.rating is not None:
            raise Conflict("This ticket is already rated", {"reason": "already_rated"})
        if ticket.status != CLOSED:
            raise Conflict("Only a closed ticket can be rated", {"reason": "not_closed"})
        ticket.rating, ticket.rating_comment, ticket.rated_at = score, comment, now()
        await session.flush()
        return ticket

    async def send_canned(self, session: AsyncSession, ticket: Ticket, name: str, *,
                          origin: str, external_ref: str | None = None,
                          author_id: str | None = None, author_name: str | None = None
                          ) -> Message | None:
        """The canned reply `name` sent to the customer in their language; None when there is
        no reply of that name."""
        reply = await CannedReplyRepository(session).by_name(name)
        if reply is None:
            return None
        return await ticket_service.add_message(
            session, ticket, author="SUPPORT", origin=origin,
            body=canned_body(reply, ticket.language), external_ref=external_ref,
            canned=reply.name, author_id=author_id, author_name=author_name)

    async def command_from_telegram(self, session: AsyncSession,
                                    event: SupportCommandReceivedV1) -> str:
        """Carry out an operator's command from the topic; returns what happened (for logs).
        An event cannot be refused: a command that cannot apply is logged and dropped (the
        telegram service already answered the operator in the topic for unknown ones)."""
        ref = telegram_ref(event.chat_id, event.telegram_message_id)
        repo = TicketRepository(session)
        ticket = await repo.get(event.ticket_id, for_update=True)
        if ticket is None:
            raise LookupError(f"support command for unknown ticket {event.ticket_id}")
        operator = operator_ref(event.operator_telegram_id)
        name = event.operator_name
        if event.command == "note":
            body = readable(event.argument)
            if body is None or await repo.message_by_ref(ref):
                return "ignored"
            await self.add_note(session, ticket, body=body, origin="TELEGRAM",
                                author_id=operator, author_name=name, external_ref=ref)
            return "note"
        if event.command == "r":
            if ticket.status == CLOSED or await repo.message_by_ref(ref):
                return "ignored"
            sent = await self.send_canned(session, ticket, event.argument.strip(),
                                          origin="TELEGRAM", external_ref=ref,
                                          author_id=operator, author_name=name)
            return "canned" if sent else "canned_unknown"
        if event.command == "close":
            if ticket.status == CLOSED:
                return "ignored"
            await ticket_service.close(session, ticket, by_role="SUPPORT")
            return "closed"
        if event.command == "assign":
            await self.assign(session, ticket, operator, name)
            return "assigned"
        if event.command == "unassign":
            await self.assign(session, ticket, None)
            return "unassigned"
        log.warning("support_command_unknown", command=event.command, ticket_id=ticket.id)
        return "ignored"

    # ---- canned replies ---------------------------------------------------------------------
    async def create_canned(self, session: AsyncSession, *, name: str, body_en: str,
                            body_ru: str) -> CannedReply:
        ts = now()
        reply = CannedReply(id=new_id(), name=name.strip(), body_en=body_en, body_ru=body_ru,
                            created_at=ts, updated_at=ts)
        await self._save(session, reply)
        return reply

    async def update_canned(self, session: AsyncSession, reply_id: str,
                            changes: dict) -> CannedReply:
        reply = await self.get_canned(session, reply_id)
        for field, value in changes.items():
            if value is not None:
                setattr(reply, field, value.strip() if field == "name" else value)
        reply.updated_at = now()
        await self._save(session, reply)
        return reply

    async def delete_canned(self, session: AsyncSession, reply_id: str) -> None:
        await session.delete(await self.get_canned(session, reply_id))
        await session.flush()

    async def get_canned(self, session: AsyncSession, reply_id: str) -> CannedReply:
        reply = await session.get(CannedReply, reply_id)
        if reply is None:
            raise NotFound("Canned reply not found")
        return reply

    async def _save(self, session: AsyncSession, reply: CannedReply) -> None:
        session.add(reply)
        try:
            async with session.begin_nested():
                await session.flush()
        except IntegrityError as exc:
            raise Conflict("A canned reply of that name exists",
                           {"field": "name"}) from exc


support_desk = SupportDesk()


async def sample_open_tickets(db: Database) -> dict[str, int]:
    """Set the `tickets_open_by_age` gauge once; returns what it set."""
    async with db.transaction() as s:
        counts = await TicketRepository(s).open_by_age(AGE_EDGES_HOURS)
    out = dict(zip(AGE_LABELS, counts, strict=True))
    for label, value in out.items():
        OPEN_TICKETS.labels(label).set(value)
    return out


async def open_tickets_sampler(db: Database, every: float = 30.0) -> None:
    """The worker's loop around `sample_open_tickets` (a failed sample is logged, not fatal)."""
    while True:
        try:
            await sample_open_tickets(db)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("open_tickets_sample_failed", error=str(exc)[:300])
        await asyncio.sleep(every)
