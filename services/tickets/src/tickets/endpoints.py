"""Internal HTTP API of the tickets service (called by the gateway with a signed identity)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.common import TicketStatus
from contracts.public.insight import TicketsStatsOut
from runtime.deps import Admin, Ident, Session, Staff
from runtime.periods import PeriodQuery
from tickets.models import Ticket
from tickets.repository import TicketRepository
from tickets.schemas import (
    AdminTicketEnvelope,
    AdminTicketList,
    AdminTicketOut,
    MessageCreate,
    MessageEnvelope,
    MessageOut,
    TicketCreate,
    TicketEnvelope,
    TicketList,
    TicketOut,
)
from tickets.service import ticket_service
from tickets.stats import StatsRepository

router = APIRouter(prefix="/internal")


Limit = Annotated[int, Query(ge=1, le=100)]


async def _out(s: AsyncSession, ticket: Ticket, model=TicketOut, with_messages=True):
    messages = await TicketRepository(s).messages(ticket.id) if with_messages else []
    data = {c: getattr(ticket, c) for c in ("id", "subject", "status", "source", "created_at",
                                             "last_message_at", "user_id")}
    data["messages"] = [MessageOut.model_validate(m, from_attributes=True) for m in messages]
    return model.model_validate(data)


@router.post("/tickets", status_code=201, response_model=TicketEnvelope)
async def create_ticket(body: TicketCreate, s: Session, ident: Ident):
    ticket = await ticket_service.open(s, user_id=ident.user_id, subject=body.subject,
                                       body=body.body)
    return {"ticket": await _out(s, ticket)}


@router.get("/tickets", response_model=TicketList)
async def list_tickets(s: Session, ident: Ident, status: TicketStatus | None = None,
                       limit: Limit = 20, cursor: str | None = None):
    rows, nxt = await TicketRepository(s).list(user_id=ident.user_id, status=status, limit=limit,
                                               cursor=cursor)
    return {"tickets": [await _out(s, t, with_messages=False) for t in rows], "next_cursor": nxt}


@router.get("/tickets/{ticket_id}", response_model=TicketEnvelope)
async def get_ticket(ticket_id: str, s: Session, ident: Ident):
    ticket = await ticket_service.get_visible(s, ident, ticket_id)
    return {"ticket": await _out(s, ticket)}


@router.post("/tickets/{ticket_id}/messages", status_code=201, response_model=MessageEnvelope)
async def add_message(ticket_id: str, body: MessageCreate, s: Session, ident: Ident):
    ticket = await ticket_service.get_visible(s, ident, ticket_id, for_update=True)
    msg = await ticket_service.add_message(s, ticket, author="USER", origin="WEB", body=body.body)
    return {"message": MessageOut.model_validate(msg, from_attributes=True)}


@router.post("/tickets/{ticket_id}/close", response_model=TicketEnvelope)
async def close_ticket(ticket_id: str, s: Session, ident: Ident):
    ticket = await ticket_service.get_visible(s, ident, ticket_id, for_update=True)
    await ticket_service.close(s, ticket, by_role="USER")
    return {"ticket": await _out(s, ticket)}


@router.get("/admin/tickets", response_model=AdminTicketList)
async def admin_list(s: Session, ident: Staff, status: TicketStatus | None = None,
                     limit: Limit = 20, cursor: str | None = None):
    rows, nxt = await TicketRepository(s).list(user_id=None, status=status, limit=limit,
                                               cursor=cursor)
    return {"tickets": [await _out(s, t, AdminTicketOut, with_messages=False) for t in rows],
            "next_cursor": nxt}


@router.get("/admin/tickets/{ticket_id}", response_model=AdminTicketEnvelope)
async def admin_get(ticket_id: str, s: Session, ident: Staff):
    ticket = await ticket_service.get_visible(s, ident, ticket_id, staff_view=True)
    return {"ticket": await _out(s, ticket, AdminTicketOut)}


@router.post("/admin/tickets/{ticket_id}/messages", status_code=201, response_model=MessageEnvelope)
async def admin_answer(ticket_id: str, body: MessageCreate, s: Session, ident: Staff):
    ticket = await ticket_service.get_visible(s, ident, ticket_id, staff_view=True,
                                              for_update=True)
    msg = await ticket_service.add_message(s, ticket, author="SUPPORT", origin="ADMIN",
                                           body=body.body)
    return {"message": MessageOut.model_validate(msg, from_attributes=True)}


@router.post("/admin/tickets/{ticket_id}/close", response_model=AdminTicketEnvelope)
async def admin_close(ticket_id: str, s: Session, ident: Staff):
    ticket = await ticket_service.get_visible(s, ident, ticket_id, staff_view=True,
                                              for_update=True)
    await ticket_service.close(s, ticket, by_role=ident.role)
    return {"ticket": await _out(s, ticket, AdminTicketOut)}



@router.get("/admin/stats", response_model=TicketsStatsOut)
async def admin_stats(s: Session, _: Admin, periods: PeriodQuery):
    """The tickets service's KPI figures per period (docs/06-adr/0008)."""
    return await StatsRepository(s).stats(periods)
