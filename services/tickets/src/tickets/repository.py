"""Queries on the tickets schema."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from runtime.pagination import keyset_page
from tickets.models import CannedReply, Message, Ticket


class TicketRepository:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def get(self, ticket_id: str, *, for_update: bool = False) -> Ticket | None:
        stmt = sa.select(Ticket).where(Ticket.id == ticket_id)
        if for_update:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def get_own(self, ticket_id: str, user_id: str, *,
                      for_update: bool = False) -> Ticket | None:
        """The ticket if it belongs to `user_id`; another user's ticket is None."""
        stmt = sa.select(Ticket).where(Ticket.id == ticket_id, Ticket.user_id == user_id)
        if for_update:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def messages(self, ticket_id: str, *, notes: bool = False) -> list[Message]:
        """The ticket's messages oldest first; internal notes only when `notes` (staff)."""
        stmt = sa.select(Message).where(Message.ticket_id == ticket_id)
        if not notes:
            stmt = stmt.where(Message.kind == "MESSAGE")
        stmt = stmt.order_by(Message.created_at, Message.id)
        return list((await self.session.execute(stmt)).scalars())

    async def message_by_ref(self, ref: str) -> Message | None:
        stmt = sa.select(Message).where(Message.external_ref == ref)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def latest_open_for_user(self, user_id: str) -> Ticket | None:
        """The user's open ticket with the latest message, locked for the message to come."""
        stmt = (sa.select(Ticket).where(Ticket.user_id == user_id, Ticket.status != "CLOSED")
                .order_by(Ticket.last_message_at.desc()).limit(1).with_for_update())
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def list(self, *, user_id: str | None, status: str | None, limit: int,
                   cursor: str | None) -> tuple[list[Ticket], str | None]:
        stmt = sa.select(Ticket)
        if user_id is not None:
            stmt = stmt.where(Ticket.user_id == user_id)
        if status:
            stmt = stmt.where(Ticket.status == status)
        return await keyset_page(self.session, stmt, Ticket, limit, cursor)

    async def open_by_age(self, edges_hours: tuple[int, ...]) -> list[int]:
        """How many tickets not closed were opened within each age band: below the first edge,
        between each pair of edges, and above the last (len(edges_hours) + 1 counts)."""
        age = sa.func.now() - Ticket.created_at
        bands, lower = [], None
        for edge in (*edges_hours, None):
            cond = sa.true()
            if lower is not None:
                cond = sa.and_(cond, age >= sa.text(f"interval '{lower} hours'"))
            if edge is not None:
                cond = sa.and_(cond, age < sa.text(f"interval '{edge} hours'"))
            bands.append(sa.func.count().filter(cond))
            lower = edge
        row = (await self.session.execute(
            sa.select(*bands).where(Ticket.status != "CLOSED"))).one()
        return [int(v) for v in row]

    def add(self, obj) -> None:
        self.session.add(obj)


class CannedReplyRepository:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def by_name(self, name: str) -> CannedReply | None:
        """The reply of that name, case-insensitively (operators type it in the topic)."""
        stmt = sa.select(CannedReply).where(sa.func.lower(CannedReply.name) == name.lower())
        return (await self.session.execute(stmt.limit(1))).scalar_one_or_none()

    async def all(self) -> list[CannedReply]:
        stmt = sa.select(CannedReply).order_by(CannedReply.name)
        return list((await self.session.execute(stmt)).scalars())
