"""`/tickets/*` and `/admin/tickets/*`: routed to the tickets service."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from contracts.public.tickets import (
    AdminTicketEnvelope,
    AdminTicketList,
    AssignBody,
    AttachmentEnvelope,
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
from gateway.api.deps import Actions, Clients, CurrentCaller, Limits, PageLimit, StaffCaller
from runtime.errors import ValidationFailed

router = APIRouter(tags=["tickets"])
admin = APIRouter(prefix="/admin", tags=["admin"])


@router.post("/tickets", status_code=201, response_model=TicketEnvelope)
async def create_ticket(body: TicketCreate, clients: Clients, limits: Limits,
                        caller: CurrentCaller):
    await limits.new_ticket(caller.id)
    return (await clients.tickets.open(caller, body)).response()


@router.get("/tickets", response_model=TicketList)
async def list_tickets(clients: Clients, caller: CurrentCaller, status: TicketStatus | None = None,
                       limit: int = PageLimit, cursor: str | None = None):
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


# Files: `file` (png, jpeg, pdf by their bytes, at most 5 MB each) 1-5 times, `body` optional.
UPLOAD_FORM = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"], "properties": {
        "file": {"type": "array", "minItems": 1, "maxItems": 5,
                 "items": {"type": "string", "format": "binary"},
                 "description": "image/png, image/jpeg or application/pdf, at most 5 MB each"},
        "body": {"type": "string", "maxLength": 4000,
                 "description": "the message's text (the files' names without it)"}}}}}}}
UPLOAD_PATH = "/tickets/{ticket_id}/attachments"
# the route the body limit allows 5 files of 5 MB on (gateway.app)
UPLOAD_PATTERN = r"/tickets/[^/]+/attachments"
UPLOAD_MAX_BODY = 5 * 5 * 1024 * 1024 + 64 * 1024


@router.post(UPLOAD_PATH, status_code=201, response_model=AttachmentEnvelope,
             openapi_extra=UPLOAD_FORM, responses={413: {"description": "A file over 5 MB"}})
async def upload_attachments(ticket_id: str, request: Request, clients: Clients, limits: Limits,
                             caller: CurrentCaller):
    """The owner's files on a new message of their ticket (multipart). 400 for a type other
    than png, jpeg or pdf (by the file's bytes, not its name) or more than 5 files; 413 over
    5 MB a file; 404 for a ticket that is not theirs."""
    ctype = request.headers.get("content-type", "")
    if not ctype.lower().startswith("multipart/form-data"):
        raise ValidationFailed("Send the files as multipart/form-data", [
            {"loc": ["body"], "msg": "multipart/form-data expected", "type": "content_type"}])
    await limits.attachment(caller.id, ticket_id)
    return (await clients.tickets.attach(caller, ticket_id, await request.body(),
                                         ctype)).response()


@router.get("/tickets/{ticket_id}/attachments/{attachment_id}", response_class=Response,
            responses={200: {"description": "The file", "content": {
                "image/png": {}, "image/jpeg": {}, "application/pdf": {}}}})
async def get_attachment(ticket_id: str, attachment_id: str, clients: Clients,
                         caller: CurrentCaller):
    """The file, to its ticket's owner and to SUPPORT/ADMIN (404 for anyone else), always as a
    download (`Content-Disposition: attachment`, `nosniff`)."""
    return attachment_response(await clients.tickets.attachment(caller, ticket_id,
                                                                attachment_id))


def attachment_response(r) -> Response:
    """The tickets service's file answer as ours: its type and name, never rendered inline,
    never cached."""
    return Response(content=r.content, media_type=r.headers.get("content-type"), headers={
        "Content-Disposition": r.headers.get("content-disposition", "attachment"),
        "X-Content-Type-Options": "nosniff", "Cache-Control": "private, no-store"})


@router.post("/tickets/{ticket_id}/rating", status_code=201, response_model=TicketEnvelope)
async def rate_ticket(ticket_id: str, body: RatingCreate, clients: Clients, limits: Limits,
                      caller: CurrentCaller):
    """CSAT: the owner rates their closed ticket once, 1-5 (409 before it is closed, or
    again)."""
    await limits.reply(caller.id, ticket_id)
    return (await clients.tickets.rate(caller, ticket_id, body)).response()


@admin.get("/tickets", response_model=AdminTicketList)
async def admin_list(clients: Clients, caller: StaffCaller, status: TicketStatus | None = None,
                     limit: int = PageLimit, cursor: str | None = None):
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
