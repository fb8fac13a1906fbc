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


async def limit_new_ticket(request: Request, user_id: str) -> None:
    """429 `RATE_LIMITED` past TICKETS_PER_USER_PER_HOUR (the API and the web panel)."""
    st = request.app.state.settings
    await request.app.state.limiter.hit("ticket-user", user_id, st.tickets_per_user_per_hour,
                                        3600)


async def limit_reply(request: Request, user_id: str, ticket_id: str) -> None:
    """A customer's replies: per user, and per user on one ticket (the API and the web panel).

    The ticket bucket is keyed by user and ticket, so nobody can use up the owner's bucket by
    posting to a ticket id that is not theirs.
    """
    st, limiter = request.app.state.settings, request.app.state.limiter
    await limiter.hit("reply-user", user_id, st.ticket_replies_per_user_per_hour, 3600)
    await limiter.hit("reply-ticket", f"{user_id}:{ticket_id}",
                      st.ticket_replies_per_ticket_per_hour, 3600)


@router.post("/tickets", status_code=201, response_model=TicketEnvelope)
async def create_ticket(body: TicketCreate, request: Request, caller: CurrentCaller):
    await limit_new_ticket(request, caller.id)
    return await _tickets(request).relay("POST", "/internal/tickets", json=body.model_dump(),
                                         user_id=caller.id, role=caller.role)


@router.get("/tickets", response_model=TicketList)
async def list_tickets(request: Request, caller: CurrentCaller, status: TicketStatus | None = None,
                       limit: int = Query(20, ge=1, le=100), cursor: str | None = None):
    return await _tickets(request).relay("GET", "/internal/tickets",
                                         params={"status": status, "limit": limit,
                                                 "cursor": cursor or None},
                                         user_id=caller.id, role=caller.role)


@router.get("/tickets/{ticket_id}", response_model=TicketEnvelope)
async def get_ticket(ticket_id: str, request: Request, caller: CurrentCaller):
    return await _tickets(request).relay("GET", f"/internal/tickets/{ticket_id}",
                                         user_id=caller.id, role=caller.role)


@router.post("/tickets/{ticket_id}/messages", status_code=201, response_model=MessageEnvelope)
async def add_message(ticket_id: str, body: MessageCreate, request: Request,
                      caller: CurrentCaller):
    await limit_reply(request, caller.id, ticket_id)
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
                                                 "cursor": cursor or None},
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
