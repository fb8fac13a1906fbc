"""Internal HTTP API of the tickets service (called by the gateway with a signed identity)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.common import TicketStatus
from contracts.public.insight import TicketsStatsOut
from runtime.deps import Admin, Ident, Session, Staff
from runtime.periods import PeriodQuery
from tickets import attachments
from tickets.desk import support_desk
from tickets.models import Ticket
from tickets.repository import CannedReplyRepository, TicketRepository
from tickets.schemas import (
    AdminTicketEnvelope,
    AdminTicketList,
    AdminTicketOut,
    AssignBody,
    CannedReplyCreate,
    CannedReplyDeleted,
    CannedReplyEnvelope,
    CannedReplyList,
    CannedReplyOut,
    CannedReplyUpdate,
    MessageCreate,
    MessageEnvelope,
    MessageOut,
    NoteCreate,
    RatingCreate,
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
    """The ticket as `model` shows it: staff models (AdminTicketOut) with internal notes and the
    desk's fields, the customer's without."""
    staff = model is AdminTicketOut
    messages = (await TicketRepository(s).messages(ticket.id, notes=staff)
                if with_messages else [])
    data = {c: getattr(ticket, c) for c in ("id", "subject", "status", "source", "created_at",
                                             "last_message_at", "user_id", "rating")}
    files = await attachments.of_messages(s, [m.id for m in messages])
    data["messages"] = [MessageOut.model_validate(m, from_attributes=True).model_copy(
        update={"attachments": files.get(m.id, [])}) for m in messages]
    if staff:
        data["first_response_at"] = ticket.first_response_at
        data["rating_comment"] = ticket.rating_comment
        data["assignee"] = ({"id": ticket.assignee_id, "name": ticket.assignee_name}
                            if ticket.assignee_id else None)
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



@router.post("/tickets/{ticket_id}/rating", status_code=201, response_model=TicketEnvelope)
async def rate_ticket(ticket_id: str, body: RatingCreate, s: Session, ident: Ident):
    """CSAT: the owner rates their closed ticket once (409 before it is closed, or again)."""
    ticket = await ticket_service.get_visible(s, ident, ticket_id, for_update=True)
    await support_desk.rate(s, ticket, body.score, body.comment)
    return {"ticket": await _out(s, ticket)}


@router.post("/admin/tickets/{ticket_id}/notes", status_code=201, response_model=MessageEnvelope)
async def admin_note(ticket_id: str, body: NoteCreate, s: Session, ident: Staff):
    ticket = await ticket_service.get_visible(s, ident, ticket_id, staff_view=True,
                                              for_update=True)
    note = await support_desk.add_note(s, ticket, body=body.body, origin="ADMIN",
                                       author_id=ident.user_id)
    return {"message": MessageOut.model_validate(note, from_attributes=True)}


@router.post("/admin/tickets/{ticket_id}/assign", response_model=AdminTicketEnvelope)
async def admin_assign(ticket_id: str, body: AssignBody, s: Session, ident: Staff,
                       name: str | None = None):
    """`user_id` must name a staff user: the gateway, which owns users, checks it first and
    passes their `name`."""
    ticket = await ticket_service.get_visible(s, ident, ticket_id, staff_view=True,
                                              for_update=True)
    await support_desk.assign(s, ticket, body.user_id, name)
    return {"ticket": await _out(s, ticket, AdminTicketOut)}


@router.get("/admin/canned-replies", response_model=CannedReplyList)
async def canned_list(s: Session, ident: Staff):
    rows = await CannedReplyRepository(s).all()
    return {"canned_replies": [CannedReplyOut.model_validate(r, from_attributes=True)
                               for r in rows]}


@router.post("/admin/canned-replies", status_code=201, response_model=CannedReplyEnvelope)
async def canned_create(body: CannedReplyCreate, s: Session, ident: Staff):
    reply = await support_desk.create_canned(s, **body.model_dump())
    return {"canned_reply": CannedReplyOut.model_validate(reply, from_attributes=True)}


@router.patch("/admin/canned-replies/{reply_id}", response_model=CannedReplyEnvelope)
async def canned_update(reply_id: str, body: CannedReplyUpdate, s: Session, ident: Staff):
    reply = await support_desk.update_canned(s, reply_id, body.model_dump(exclude_unset=True))
    return {"canned_reply": CannedReplyOut.model_validate(reply, from_attributes=True)}


@router.delete("/admin/canned-replies/{reply_id}", response_model=CannedReplyDeleted)
async def canned_delete(reply_id: str, s: Session, ident: Staff):
    await support_desk.delete_canned(s, reply_id)
    return {"deleted": True}


@router.get("/admin/stats", response_model=TicketsStatsOut)
async def admin_stats(s: Session, _: Admin, periods: PeriodQuery):
    """The tickets service's KPI figures per period (docs/06-adr/0008)."""
    return await StatsRepository(s).stats(periods)
