"""`/tickets/*` and `/admin/tickets/*`: routed to the tickets service."""

from __future__ import annotations

from fastapi import APIRouter, Query

from contracts.public.tickets import (
    AdminTicketEnvelope,
    AdminTicketList,
    AssignBody,
    CannedReplyCreate,
    CannedReplyDeleted,
    CannedReplyEnvelope,
    CannedReplyList,
    CannedReplyUpdate,
    MessageCreate,
    MessageEnvelope,
    NoteCreate,
    RatingCreate,
    TicketCreate,
    TicketEnvelope,
    TicketList,
    TicketStatus,
)
from gateway import desk
from gateway.api.deps import Actions, Clients, CurrentCaller, Limits, StaffCaller

router = APIRouter(tags=["tickets"])
admin = APIRouter(prefix="/admin", tags=["admin"])


@router.post("/tickets", status_code=201, response_model=TicketEnvelope)
async def create_ticket(body: TicketCreate, clients: Clients, limits: Limits,
                        caller: CurrentCaller):
    await limits.new_ticket(caller.id)
    return (await clients.tickets.open(caller, body)).response()


@router.get("/tickets", response_model=TicketList)
async def list_tickets(clients: Clients, caller: CurrentCaller, status: TicketStatus | None = None,
                       limit: int = Query(20, ge=1, le=100), cursor: str | None = None):
    return (await clients.tickets.tickets(caller, status=status, limit=limit,
                                          cursor=cursor)).response()


@router.get("/tickets/{ticket_id}", response_model=TicketEnvelope)
async def get_ticket(ticket_id: str, clients: Clients, caller: CurrentCaller):
    return (await clients.tickets.ticket(caller, ticket_id)).response()


@router.post("/tickets/{ticket_id}/messages", status_code=201, response_model=MessageEnvelope)
async def add_message(ticket_id: str, body: MessageCreate, clients: Clients, limits: Limits,
                      caller: CurrentCaller):
    await limits.reply(caller.id, ticket_id)
    return (await clients.tickets.reply(caller, ticket_id, body)).response()


@router.post("/tickets/{ticket_id}/close", response_model=TicketEnvelope)
async def close_ticket(ticket_id: str, clients: Clients, caller: CurrentCaller):
    return (await clients.tickets.close(caller, ticket_id)).response()


@router.post("/tickets/{ticket_id}/rating", status_code=201, response_model=TicketEnvelope)
async def rate_ticket(ticket_id: str, body: RatingCreate, clients: Clients, limits: Limits,
                      caller: CurrentCaller):
    """CSAT: the owner rates their closed ticket once, 1-5 (409 before it is closed, or
    again)."""
    await limits.reply(caller.id, ticket_id)
    return (await clients.tickets.rate(caller, ticket_id, body)).response()


@admin.get("/tickets", response_model=AdminTicketList)
async def admin_list(clients: Clients, caller: StaffCaller, status: TicketStatus | None = None,
                     limit: int = Query(20, ge=1, le=100), cursor: str | None = None):
    return (await clients.tickets.queue(caller, status=status, limit=limit,
                                        cursor=cursor)).response()


@admin.get("/tickets/{ticket_id}", response_model=AdminTicketEnvelope)
async def admin_get(ticket_id: str, actions: Actions, caller: StaffCaller):
    """The ticket with its `customer` card (account, subscription, last invoices, open
    tickets)."""
    return await desk.staff_ticket(actions.db, actions.clients, caller, ticket_id)


@admin.post("/tickets/{ticket_id}/messages", status_code=201, response_model=MessageEnvelope)
async def admin_answer(ticket_id: str, body: MessageCreate, actions: Actions,
                       caller: StaffCaller):
    return (await actions.answer_ticket(caller, ticket_id, body)).response()


@admin.post("/tickets/{ticket_id}/close", response_model=AdminTicketEnvelope)
async def admin_close(ticket_id: str, actions: Actions, caller: StaffCaller):
    return (await actions.close_ticket(caller, ticket_id)).response()


# ---- the support desk (api.md "Support desk") ----------------------------------------------
@admin.post("/tickets/{ticket_id}/notes", status_code=201, response_model=MessageEnvelope)
async def admin_note(ticket_id: str, body: NoteCreate, actions: Actions, limits: Limits,
                     caller: StaffCaller):
    """An internal note: shown to staff only, never sent to the customer."""
    await limits.reply(caller.id, ticket_id)
    return (await desk.add_note(actions, caller, ticket_id, body)).response()


@admin.post("/tickets/{ticket_id}/assign", response_model=AdminTicketEnvelope)
async def admin_assign(ticket_id: str, body: AssignBody, actions: Actions,
                       caller: StaffCaller):
    """Assign to a SUPPORT or ADMIN user, or unassign with `{"user_id": null}`."""
    return (await desk.assign(actions, caller, ticket_id, body)).response()


@admin.get("/canned-replies", response_model=CannedReplyList)
async def canned_list(clients: Clients, caller: StaffCaller):
    return (await clients.tickets.canned_replies(caller)).response()


@admin.post("/canned-replies", status_code=201, response_model=CannedReplyEnvelope)
async def canned_create(body: CannedReplyCreate, actions: Actions, caller: StaffCaller):
    return (await desk.create_canned(actions, caller, body)).response()


@admin.patch("/canned-replies/{reply_id}", response_model=CannedReplyEnvelope)
async def canned_update(reply_id: str, body: CannedReplyUpdate, actions: Actions,
                        caller: StaffCaller):
    return (await desk.update_canned(actions, caller, reply_id, body)).response()


@admin.delete("/canned-replies/{reply_id}", response_model=CannedReplyDeleted)
async def canned_delete(reply_id: str, actions: Actions, caller: StaffCaller):
    return (await desk.delete_canned(actions, caller, reply_id)).response()
