"""The support desk's mutations from the API and the admin panel: internal notes, assignment and
canned replies, each audited with its outcome (as `gateway.actions` does for every mutation).

An assignee is checked here, where users live: it must be an active SUPPORT or ADMIN user, and
the tickets service is told their email as the assignee's name.
"""

from __future__ import annotations

from contracts.public.tickets import (
    AdminTicketEnvelope,
    AssignBody,
    CannedReplyCreate,
    CannedReplyDeleted,
    CannedReplyEnvelope,
    CannedReplyUpdate,
    MessageEnvelope,
    NoteCreate,
)
from gateway.actions import AdminActions
from gateway.audit import audited
from gateway.clients import Reply, Who
from gateway.repository import UserRepository
from runtime.errors import ValidationFailed


async def add_note(actions: AdminActions, caller: Who, ticket_id: str,
                   body: NoteCreate) -> Reply[MessageEnvelope]:
    return await actions._remote(caller, "ticket.note", "ticket", ticket_id,
                                 lambda: actions.clients.tickets.note(caller, ticket_id, body))


async def assign(actions: AdminActions, caller: Who, ticket_id: str,
                 body: AssignBody) -> Reply[AdminTicketEnvelope]:
    name = None
    if body.user_id is not None:
        async with actions.db.transaction() as s:
            user = await UserRepository(s).get(body.user_id)
        if user is None or user.role not in {"SUPPORT", "ADMIN"} or user.is_blocked:
            raise ValidationFailed("The assignee must be an active SUPPORT or ADMIN user",
                                   {"field": "user_id"})
        name = user.email
    return await actions._remote(
        caller, "ticket.assign", "ticket", ticket_id,
        lambda: actions.clients.tickets.assign(caller, ticket_id, body, name),
        {"user_id": body.user_id})


async def create_canned(actions: AdminActions, caller: Who,
                        body: CannedReplyCreate) -> Reply[CannedReplyEnvelope]:
    async with audited(actions.db, caller, "canned_reply.create", "canned_reply", "new",
                       {"name": body.name}) as audit:
        reply = await actions.clients.tickets.create_canned(caller, body)
        audit.result(reply.status_code, {"canned_reply_id": reply.data.canned_reply.id})
    return reply


async def update_canned(actions: AdminActions, caller: Who, reply_id: str,
                        body: CannedReplyUpdate) -> Reply[CannedReplyEnvelope]:
    changes = body.model_dump(exclude_unset=True)
    return await actions._remote(
        caller, "canned_reply.update", "canned_reply", reply_id,
        lambda: actions.clients.tickets.update_canned(caller, reply_id, changes),
        {"fields": sorted(changes)})


async def delete_canned(actions: AdminActions, caller: Who,
                        reply_id: str) -> Reply[CannedReplyDeleted]:
    return await actions._remote(caller, "canned_reply.delete", "canned_reply", reply_id,
                                 lambda: actions.clients.tickets.delete_canned(caller, reply_id))
