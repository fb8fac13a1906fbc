"""Ticket lifecycle: the state machine, threads, the events other contexts see, and which
ticket a message from Telegram belongs to."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from contracts import events_of
from contracts.text import clean_untrusted, has_visible
from contracts.tickets import (
    MessageAddedV1,
    TicketAssignedV1,
    TicketClosedV1,
    TicketMessage,
    TicketOpenedV1,
    TicketStatusChangedV1,
)
from runtime.clock import now
from runtime.errors import IllegalTransition, NotFound
from runtime.identity import Identity
from runtime.logging import get_logger
from runtime.outbox import Outbox
from tickets import attachments
from tickets.hours import support_hours
from tickets.metrics import FIRST_RESPONSE_SECONDS
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

events = Outbox(outbox, producer="tickets", publishes=events_of("tickets"))


def new_id() -> str:
    return uuid.uuid4().hex


def status_after_message(author: str, status: str) -> str:
    nxt = _AFTER_MESSAGE.get((author, status))
    if nxt is None:
        raise IllegalTransition("ticket", status, f"{author} message")
    return nxt


def telegram_ref(chat_id: int, message_id: int) -> str:
    """The external ref of a Telegram message: unique per message, so it lands once."""
    return f"tg:{chat_id}:{message_id}"


def readable(text: str) -> str | None:
    """Chat text as stored: the same cleaning as the API's (contracts.text), plus NUL and lone
    surrogates dropped (an event cannot be refused, and Postgres would refuse them); None when
    nothing visible is left."""
    cleaned = clean_untrusted(text)[:4000]
    return cleaned if has_visible(cleaned) else None


LANGUAGES = ("en", "ru")


def language_of(code: str | None) -> str | None:
    """A Telegram `language_code` (or a web language) as one of ours; None when not told."""
    if not code:
        return None
    primary = code.split("-", 1)[0].lower()
    return primary if primary in LANGUAGES else "en"


def subject_from(text: str) -> str:
    """The subject of a ticket a chat message opens: its first 80 characters on one line, and
    never below the API's 3-character minimum."""
    line = " ".join(text.split())[:80] or "Telegram message"
    return line if len(line) >= 3 else f"Telegram: {line}"


class TicketService:
    async def open(self, session: AsyncSession, *, user_id: str, subject: str, body: str,
                   source: str = "WEB", origin: str = "WEB", external_ref: str | None = None,
                   user_label: str | None = None,
                   files: Sequence[attachments.Checked] = ()) -> Ticket:
        ts = now()
        ticket = Ticket(id=new_id(), user_id=user_id, subject=subject, status=OPEN, source=source,
                        seq=1, created_at=ts, last_message_at=ts)
        message = Message(id=new_id(), ticket_id=ticket.id, author_role="USER", origin=origin,
                          body=body, created_at=ts, external_ref=external_ref)
        session.add(ticket)
        await session.flush()
        session.add(message)
        await session.flush()
        attached = await attachments.store(session, ticket, message, files)
        await events.add(session, TicketOpenedV1(
            ticket_id=ticket.id, user_id=user_id, subject=subject, source=source, status=OPEN,
            message=TicketMessage(message_id=message.id, author_role="USER", origin=origin,
                                  body=body, created_at=ts, attachments=attached),
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
                          body: str, external_ref: str | None = None, canned: str | None = None,
                          author_id: str | None = None, author_name: str | None = None,
                          files: Sequence[attachments.Checked] = ()) -> Message:
        """A message on the ticket. The first staff answer sets `first_response_at` and, when
        the ticket has no assignee and the author is known (`author_id`), assigns it to them."""
        new_status = status_after_message(author, ticket.status)
        ts = now()
        message = Message(id=new_id(), ticket_id=ticket.id, author_role=author, origin=origin,
                          body=body, created_at=ts, external_ref=external_ref,
                          author_name=author_name)
        session.add(message)
        old_status = ticket.status
        ticket.status = new_status
        ticket.last_message_at = ts
        if new_status != CLOSED:
            ticket.closed_at = None
        ticket.seq += 1
        await session.flush()
        attached = await attachments.store(session, ticket, message, files)
        await events.add(session, MessageAddedV1(
            ticket_id=ticket.id, user_id=ticket.user_id, subject=ticket.subject,
            message_id=message.id, author_role=author, origin=origin, body=body, created_at=ts,
            ticket_status=new_status, seq=ticket.seq, canned=canned, attachments=attached,
        ))
        if author == "SUPPORT" and ticket.first_response_at is None:
            ticket.first_response_at = ts
            ticket.first_response_business_s = support_hours().seconds_between(
                ticket.created_at, ts)
            FIRST_RESPONSE_SECONDS.observe(ticket.first_response_business_s)
            if ticket.assignee_id is None and author_id is not None:
                await self.assign(session, ticket, author_id, author_name)
        if new_status != old_status:
            ticket.seq += 1
            await events.add(session, TicketStatusChangedV1(
                ticket_id=ticket.id, user_id=ticket.user_id, from_status=old_status,
                to_status=new_status, changed_at=ts, seq=ticket.seq,
            ))
        return message

    async def assign(self, session: AsyncSession, ticket: Ticket, assignee_id: str | None,
                     assignee_name: str | None = None) -> Ticket:
        """Assign (or with None unassign); the same assignee again changes nothing."""
        if ticket.assignee_id == assignee_id:
            return ticket
        ticket.assignee_id = assignee_id
        ticket.assignee_name = assignee_name if assignee_id else None
        ticket.seq += 1
        await session.flush()
        await events.add(session, TicketAssignedV1(
            ticket_id=ticket.id, user_id=ticket.user_id, assignee_id=assignee_id,
            assignee_name=ticket.assignee_name, assigned_at=now(), seq=ticket.seq))
        return ticket

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

    async def message_from_telegram(self, session: AsyncSession, *, user_id: str,
                                    ticket_id: str | None, chat_id: int, message_id: int,
                                    text: str, language_code: str | None = None,
                                    files: Sequence[attachments.Checked] = ()
                                    ) -> Ticket | None:
        """A linked customer wrote to the bot: the message goes to the ticket the bot named if
        it is theirs, else to their latest open ticket, else it opens a ticket whose subject is
        taken from the text. Returns the ticket it landed on; None when nothing was added (the
        message already landed, or nothing visible is left of it)."""
        ref = telegram_ref(chat_id, message_id)
        repo = TicketRepository(session)
        if await repo.message_by_ref(ref):
            return None
        body = readable(text) or attachments.names(files)
        if body is None:  # nothing an operator could read: no ticket, no message
            log.warning("telegram_text_not_visible", user_id=user_id, ref=ref)
            return None
        ticket = None
        if ticket_id:
            ticket = await repo.get_own(ticket_id, user_id, for_update=True)
        if ticket is None:
            ticket = await repo.latest_open_for_user(user_id)
        if ticket is None:
            ticket = await self.open(session, user_id=user_id, subject=subject_from(body),
                                     body=body, source="TELEGRAM", origin="TELEGRAM",
                                     external_ref=ref, files=files)
        else:
            await self.add_message(session, ticket, author="USER", origin="TELEGRAM", body=body,
                                   external_ref=ref, files=files)
        ticket.language = language_of(language_code) or ticket.language
        return ticket

    async def reply_from_telegram(self, session: AsyncSession, *, ticket_id: str, chat_id: int,
                                  message_id: int, body: str,
                                  operator_telegram_id: int | None = None,
                                  operator_name: str | None = None,
                                  files: Sequence[attachments.Checked] = ()) -> Ticket | None:
        """An operator answered a ticket in the support chat. Returns the ticket; None when
        nothing was added: the reply already landed, nothing visible is left of it, or the
        ticket is closed (an event cannot be refused, so it is dropped with a warning). An
        unknown ticket raises LookupError, so the event dead-letters."""
        ref = telegram_ref(chat_id, message_id)
        repo = TicketRepository(session)
        if await repo.message_by_ref(ref):
            return None
        ticket = await repo.get(ticket_id, for_update=True)
        if ticket is None:
            raise LookupError(f"support reply for unknown ticket {ticket_id}")
        text = readable(body) or attachments.names(files)
        if text is None:
            log.warning("telegram_text_not_visible", ticket_id=ticket.id, ref=ref)
            return None
        try:
            await self.add_message(
                session, ticket, author="SUPPORT", origin="TELEGRAM", body=text,
                external_ref=ref, author_name=operator_name, files=files,
                author_id=None if operator_telegram_id is None else f"tg:{operator_telegram_id}")
        except IllegalTransition:
            log.warning("support_reply_on_closed_ticket", ticket_id=ticket.id)
            return None
        return ticket


ticket_service = TicketService()
