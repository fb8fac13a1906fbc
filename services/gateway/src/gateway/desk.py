"""The support desk in the API and the admin panel: internal notes, assignment and canned
replies, each audited with its outcome (as `gateway.actions` does for every mutation), and the
customer card of the staff ticket view.

An assignee is checked here, where users live: it must be an active SUPPORT or ADMIN user, and
the tickets service is told their email as the assignee's name.

The customer card (`customer` on `GET /admin/tickets/{id}` and the panel's ticket page) is the
account as the gateway keeps it, and the customer's newest subscription, last 3 invoices and open
tickets, read from the services as the customer (`TheCustomer`): the caller is staff, checked
before, and the ticket is the customer's. A service that does not answer leaves its part null.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from contracts.public.tickets import (
    AdminTicketEnvelope,
    AssignBody,
    CannedReplyCreate,
    CannedReplyDeleted,
    CannedReplyEnvelope,
    CannedReplyUpdate,
    CardInvoiceOut,
    CardSubscriptionOut,
    CustomerCardOut,
    MessageEnvelope,
    NoteCreate,
)
from gateway.actions import AdminActions
from gateway.audit import audited
from gateway.clients import Clients, Reply, Who
from gateway.repository import UserRepository
from runtime.db import Database
from runtime.errors import AppError, ValidationFailed


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


# ---- the customer card ----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TheCustomer:
    """A ticket's customer, as whom the card reads their own subscription, invoices and
    tickets."""

    id: str
    role: str = "USER"


async def _part(call):
    try:
        return await call
    except AppError:  # refused, or the service is away: that part of the card stays empty
        return None


async def customer_card(db: Database, clients: Clients, user_id: str) -> CustomerCardOut:
    async with db.transaction() as s:
        user = await UserRepository(s).get(user_id)
    who = TheCustomer(user_id)
    subs, plans, invoices, tickets = await asyncio.gather(
        _part(clients.provisioner.subscriptions(who)), _part(clients.billing.plans(who)),
        _part(clients.billing.invoices(who, limit=3)),
        _part(clients.tickets.tickets(who, limit=100)))
    subscription = None
    if subs is not None and subs.data.subscriptions:
        sub = max(subs.data.subscriptions, key=lambda x: x.expires_at)
        names = {p.id: p.name for p in plans.data.plans} if plans is not None else {}
        subscription = CardSubscriptionOut(status=sub.status, plan=names.get(sub.plan_id,
                                                                             sub.plan_id),
                                           expires_at=sub.expires_at, devices=sub.max_devices)
    telegram = None
    if user is not None and user.telegram_linked:
        telegram = f"@{user.telegram_username}" if user.telegram_username else \
            str(user.telegram_id or "")
    return CustomerCardOut(
        id=user_id, email=user.email if user else None, telegram=telegram or None,
        registered_at=user.created_at if user else None, subscription=subscription,
        last_invoices=None if invoices is None else [
            CardInvoiceOut(id=i.id, status=i.status, amount_usd=i.amount_usd,
                           created_at=i.created_at) for i in invoices.data.invoices[:3]],
        open_tickets=None if tickets is None else sum(
            1 for x in tickets.data.tickets if x.status != "CLOSED"))


async def staff_ticket(db: Database, clients: Clients, caller: Who,
                       ticket_id: str) -> AdminTicketEnvelope:
    """The staff view of a ticket with its customer card."""
    envelope = (await clients.tickets.staff_ticket(caller, ticket_id)).data
    envelope.ticket.customer = await customer_card(db, clients, envelope.ticket.user_id)
    return envelope
