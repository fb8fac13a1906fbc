"""Every admin and support mutation, once: the API and the admin panel both call these.

Each is recorded in the audit log with its outcome (`gateway.audit`): a change the gateway makes
itself (blocking, roles) in the same transaction as the change; a change another service makes
right after the service answers, refused or not. A refusal is raised as the service's error.
"""

from __future__ import annotations

from contracts.public.billing import (
    AdminInvoiceEnvelope,
    AdminPlanEnvelope,
    PlanCreate,
    PlanDeleted,
    PlanUpdate,
    RefundBody,
)
from contracts.public.subscriptions import AdminSubscriptionEnvelope, ExtendBody
from contracts.public.tickets import AdminTicketEnvelope, MessageCreate, MessageEnvelope
from gateway.audit import audited
from gateway.clients import Clients, Reply, Who
from gateway.models import User
from gateway.service import user_admin_service
from runtime.db import Database


class AdminActions:
    def __init__(self, db: Database, clients: Clients):
        self.db = db
        self.clients = clients

    # ---- users (the gateway's own data) -----------------------------------------------------
    async def set_blocked(self, caller: Who, user_id: str, blocked: bool) -> User:
        action = "user.block" if blocked else "user.unblock"
        async with audited(self.db, caller, action, "user", user_id) as audit:
            async with self.db.transaction() as s:
                user = await user_admin_service.set_blocked(s, user_id, blocked, caller.id)
                await audit.record_in(s)
        return user

    async def set_role(self, caller: Who, user_id: str, role: str) -> User:
        async with audited(self.db, caller, "user.role", "user", user_id, {"role": role}) as a:
            async with self.db.transaction() as s:
                user = await user_admin_service.set_role(s, user_id, role, caller.id)
                await a.record_in(s, details={"role": role})
        return user

    # ---- plans and invoices (billing) -------------------------------------------------------
    async def create_plan(self, caller: Who, body: PlanCreate) -> Reply[AdminPlanEnvelope]:
        async with audited(self.db, caller, "plan.create", "plan", "new",
                           {"name": body.name}) as audit:
            reply = await self.clients.billing.create_plan(caller, body)
            audit.result(reply.status_code, {"plan_id": reply.data.plan.id})
        return reply

    async def update_plan(self, caller: Who, plan_id: str,
                          body: PlanUpdate) -> Reply[AdminPlanEnvelope]:
        changes = body.model_dump(exclude_unset=True)
        async with audited(self.db, caller, "plan.update", "plan", plan_id, changes) as audit:
            reply = await self.clients.billing.update_plan(caller, plan_id, changes)
            audit.result(reply.status_code, changes)
        return reply

    async def delete_plan(self, caller: Who, plan_id: str) -> Reply[PlanDeleted]:
        async with audited(self.db, caller, "plan.delete", "plan", plan_id) as audit:
            reply = await self.clients.billing.delete_plan(caller, plan_id)
            audit.result(reply.status_code)
        return reply

    async def refund(self, caller: Who, invoice_id: str,
                     body: RefundBody) -> Reply[AdminInvoiceEnvelope]:
        details = {"reason": body.reason}
        async with audited(self.db, caller, "invoice.refund", "invoice", invoice_id,
                           details) as audit:
            reply = await self.clients.billing.refund(caller, invoice_id, body)
            audit.result(reply.status_code, details)
        return reply

    # ---- support (tickets) ------------------------------------------------------------------
    async def answer_ticket(self, caller: Who, ticket_id: str,
                            body: MessageCreate) -> Reply[MessageEnvelope]:
        async with audited(self.db, caller, "ticket.answer", "ticket", ticket_id) as audit:
            reply = await self.clients.tickets.answer(caller, ticket_id, body)
            audit.result(reply.status_code)
        return reply

    async def close_ticket(self, caller: Who, ticket_id: str) -> Reply[AdminTicketEnvelope]:
        async with audited(self.db, caller, "ticket.close", "ticket", ticket_id) as audit:
            reply = await self.clients.tickets.staff_close(caller, ticket_id)
            audit.result(reply.status_code)
        return reply

    # ---- subscriptions (provisioner) --------------------------------------------------------
    async def change_subscription(self, caller: Who, subscription_id: str, action: str,
                                  body: ExtendBody | None = None
                                  ) -> Reply[AdminSubscriptionEnvelope]:
        """`extend` (with its body), `suspend` or `resume`."""
        details = body.model_dump() if body is not None else None
        async with audited(self.db, caller, f"subscription.{action}", "subscription",
                           subscription_id, details) as audit:
            reply = await self.clients.provisioner.change(caller, subscription_id, action, body)
            audit.result(reply.status_code, details)
        return reply
