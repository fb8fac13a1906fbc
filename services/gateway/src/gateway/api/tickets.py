"""`/tickets/*` and `/admin/tickets/*`: routed to the tickets service."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request

from gateway.api.deps import CurrentCaller, StaffCaller
from gateway.audit import audited
from gateway.schemas import (
    AdminTicketEnvelope,
    AdminTicketList,
    MessageCreate,
    MessageEnvelope,
    TicketCreate,
    TicketEnvelope,
    TicketList,
    TicketStatus,
)

router = APIRouter(tags=["tickets"])
admin = APIRouter(prefix="/admin", tags=["admin"])


def _tickets(request: Request):
    return request.app.state.upstreams["tickets"]


@router.post("/tickets", status_code=201, response_model=TicketEnvelope)
async def create_ticket(body: TicketCreate, request: Request, caller: CurrentCaller):
    st = request.app.state.settings
    await request.app.state.limiter.hit("ticket-user", caller.id, st.tickets_per_user_per_hour,
                                        3600)
    return await _tickets(request).relay("POST", "/internal/tickets", json=body.model_dump(),
                                         user_id=caller.id, role=caller.role)


@router.get("/tickets", response_model=TicketList)
async def list_tickets(request: Request, caller: CurrentCaller, status: TicketStatus | None = None,
                       limit: int = Query(20, ge=1, le=100), cursor: str | None = None):
    return await _tickets(request).relay("GET", "/internal/tickets",
                                         params={"status": status, "limit": limit,
                                                 "cursor": cursor},
                                         user_id=caller.id, role=caller.role)


@router.get("/tickets/{ticket_id}", response_model=TicketEnvelope)
async def get_ticket(ticket_id: str, request: Request, caller: CurrentCaller):
    return await _tickets(request).relay("GET", f"/internal/tickets/{ticket_id}",
                                         user_id=caller.id, role=caller.role)


@router.post("/tickets/{ticket_id}/messages", status_code=201, response_model=MessageEnvelope)
async def add_message(ticket_id: str, body: MessageCreate, request: Request,
                      caller: CurrentCaller):
    return await _tickets(request).relay("POST", f"/internal/tickets/{ticket_id}/messages",
                                         json=body.model_dump(), user_id=caller.id,
                                         role=caller.role)


@router.post("/tickets/{ticket_id}/close", response_model=TicketEnvelope)
async def close_ticket(ticket_id: str, request: Request, caller: CurrentCaller):
    return await _tickets(request).relay("POST", f"/internal/tickets/{ticket_id}/close",
                                         user_id=caller.id, role=caller.role)


@admin.get("/tickets", response_model=AdminTicketList)
async def admin_list(request: Request, caller: StaffCaller, status: TicketStatus | None = None,
                     limit: int = Query(20, ge=1, le=100), cursor: str | None = None):
    return await _tickets(request).relay("GET", "/internal/admin/tickets",
                                         params={"status": status, "limit": limit,
                                                 "cursor": cursor},
                                         user_id=caller.id, role=caller.role)


@admin.get("/tickets/{ticket_id}", response_model=AdminTicketEnvelope)
async def admin_get(ticket_id: str, request: Request, caller: StaffCaller):
    return await _tickets(request).relay("GET", f"/internal/admin/tickets/{ticket_id}",
                                         user_id=caller.id, role=caller.role)


@admin.post("/tickets/{ticket_id}/messages", status_code=201, response_model=MessageEnvelope)
async def admin_answer(ticket_id: str, body: MessageCreate, request: Request,
                       caller: StaffCaller):
    async with audited(request, caller, "ticket.answer", "ticket", ticket_id) as audit:
        resp = await _tickets(request).relay(
            "POST", f"/internal/admin/tickets/{ticket_id}/messages", json=body.model_dump(),
            user_id=caller.id, role=caller.role)
        audit.result(resp.status_code)
    return resp


@admin.post("/tickets/{ticket_id}/close", response_model=AdminTicketEnvelope)
async def admin_close(ticket_id: str, request: Request, caller: StaffCaller):
    async with audited(request, caller, "ticket.close", "ticket", ticket_id) as audit:
        resp = await _tickets(request).relay("POST", f"/internal/admin/tickets/{ticket_id}/close",
                                             user_id=caller.id, role=caller.role)
        audit.result(resp.status_code)
    return resp
