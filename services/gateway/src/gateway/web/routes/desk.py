"""The admin panel's support-desk pages: internal notes on a ticket and the canned replies
operators send with `/r <name>` (managed here, stored by the tickets service)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import ValidationError

from contracts.public.tickets import CannedReplyCreate, NoteCreate, RatingCreate
from gateway import desk
from gateway.web.deps import Form, SignedIn, Staff
from gateway.web.forms import FormInvalid, validate
from gateway.web.rendering import WebRoute, render, see_other, translator

router = APIRouter(prefix="/admin", route_class=WebRoute)
panel = APIRouter(prefix="/app", route_class=WebRoute)


@panel.post("/tickets/{ticket_id}/rating")
async def rate_ticket(request: Request, caller: SignedIn, form: Form, ticket_id: str):
    """CSAT from the customer's ticket page: "How did we do?", 1-5, once."""
    try:
        body = RatingCreate.model_validate(
            {"score": int(form.get("score") or 0), "comment": form.get("comment") or None})
    except (ValueError, ValidationError):
        return see_other(f"/app/tickets/{ticket_id}?done=rating_invalid")
    await request.app.state.clients.tickets.rate(caller, ticket_id, body)
    return see_other(f"/app/tickets/{ticket_id}?done=rating_saved")


@router.post("/tickets/{ticket_id}/notes")
async def add_note(request: Request, caller: Staff, form: Form, ticket_id: str):
    try:
        body = validate(NoteCreate, form, translator(request))
    except FormInvalid:
        return see_other(f"/admin/tickets/{ticket_id}?done=note_empty")
    await desk.add_note(request.app.state.actions, caller, ticket_id, body)
    return see_other(f"/admin/tickets/{ticket_id}?done=note_added")


async def _canned_page(request: Request, caller, http_status: int = 200,
                       errors: dict | None = None, values: dict | None = None):
    replies = (await request.app.state.clients.tickets.canned_replies(caller)).json()
    return render(request, "admin/canned_replies.html", http_status=http_status,
                  replies=replies["canned_replies"], errors=errors or {}, values=values or {})


@router.get("/canned-replies")
async def canned_replies(request: Request, caller: Staff):
    return await _canned_page(request, caller)


@router.post("/canned-replies")
async def create_canned(request: Request, caller: Staff, form: Form):
    try:
        body = validate(CannedReplyCreate, form, translator(request))
    except FormInvalid as exc:
        return await _canned_page(request, caller, 400, exc.errors, form)
    await desk.create_canned(request.app.state.actions, caller, body)
    return see_other("/admin/canned-replies?done=canned_saved")


@router.post("/canned-replies/{reply_id}/delete")
async def delete_canned(request: Request, caller: Staff, form: Form, reply_id: str):
    await desk.delete_canned(request.app.state.actions, caller, reply_id)
    return see_other("/admin/canned-replies?done=canned_deleted")
