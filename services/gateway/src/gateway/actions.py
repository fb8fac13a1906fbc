"""Every admin and support mutation, once: the API and the admin panel both call these.

Each is recorded in the audit log with its outcome (`gateway.audit`): a change the gateway makes
itself (blocking, roles) in the same transaction as the change; a change another service makes
right after the service answers, refused or not. A refusal is raised as the service's error.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from pydantic import BaseModel

from contracts.public.billing import (
    AdjustmentBody,
    AdminInvoiceEnvelope,
    AdminPlanEnvelope,
    AdminPromoCodeEnvelope,
    BalanceEntryEnvelope,
    PlanCreate,
    PlanDeleted,
    PlanUpdate,
    PromoCodeCreate,
    PromoCodeUpdate,
    RefundBody,
)
from contracts.public.moves import DrainOut
from contracts.public.servers import ServerCreate, ServerEnvelope, ServerUpdate
from contracts.public.subscriptions import AdminSubscriptionEnvelope, ExtendBody
from contracts.public.tickets import AdminTicketEnvelope, MessageCreate, MessageEnvelope
from gateway.audit import audited
from gateway.clients import Clients, Reply, Who
from gateway.models import User
from gateway.service import user_admin_service
from runtime.db import Database
from runtime.errors import NotFound

T = TypeVar("T", bound=BaseModel)


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

    # ---- changes other services make: recorded with the outcome they answer ----------------
    async def _remote(self, caller: Who, action: str, target_type: str, target_id: str,
                      call: Callable[[], Awaitable[Reply[T]]],
                      details: dict | None = None) -> Reply[T]:
        async with audited(self.db, caller, action, target_type, target_id, details) as audit:
            reply = await call()
            audit.result(reply.status_code)
        return reply

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
        return await self._remote(
            caller, "plan.update", "plan", plan_id,
            lambda: self.clients.billing.update_plan(caller, plan_id, changes), changes)

    async def delete_plan(self, caller: Who, plan_id: str) -> Reply[PlanDeleted]:
        return await self._remote(caller, "plan.delete", "plan", plan_id,
                                  lambda: self.clients.billing.delete_plan(caller, plan_id))

    async def refund(self, caller: Who, invoice_id: str,
                     body: RefundBody) -> Reply[AdminInvoiceEnvelope]:
        return await self._remote(caller, "invoice.refund", "invoice", invoice_id,
                                  lambda: self.clients.billing.refund(caller, invoice_id, body),
                                  {"reason": body.reason, "to": body.to})

    async def create_promo_code(self, caller: Who,
                                body: PromoCodeCreate) -> Reply[AdminPromoCodeEnvelope]:
        async with audited(self.db, caller, "promo_code.create", "promo_code", "new",
                           body.model_dump(mode="json")) as audit:
            reply = await self.clients.billing.create_promo_code(caller, body)
            audit.result(reply.status_code, {"promo_code_id": reply.data.promo_code.id})
        return reply

    async def update_promo_code(self, caller: Who, code_id: str,
                                body: PromoCodeUpdate) -> Reply[AdminPromoCodeEnvelope]:
        changes = body.model_dump(mode="json", exclude_unset=True)
        return await self._remote(
            caller, "promo_code.update", "promo_code", code_id,
            lambda: self.clients.billing.update_promo_code(caller, code_id, changes), changes)

    async def adjust_balance(self, caller: Who, user_id: str, body: AdjustmentBody,
                             idempotency_key: str | None) -> Reply[BalanceEntryEnvelope]:
        """A customer's balance adjusted (audited); an id that names no user is 404, so no
        balance is ever opened for nobody."""
        if not await user_admin_service.emails(self.db, {user_id}):
            raise NotFound("User not found")
        return await self._remote(
            caller, "balance.adjust", "user", user_id,
            lambda: self.clients.billing.adjust_balance(caller, user_id, body, idempotency_key),
            {"amount_usd": body.amount_usd, "note": body.note})

    # ---- support (tickets) ------------------------------------------------------------------
    async def answer_ticket(self, caller: Who, ticket_id: str,
                            body: MessageCreate) -> Reply[MessageEnvelope]:
        return await self._remote(caller, "ticket.answer", "ticket", ticket_id,
                                  lambda: self.clients.tickets.answer(caller, ticket_id, body))

    async def close_ticket(self, caller: Who, ticket_id: str) -> Reply[AdminTicketEnvelope]:
        return await self._remote(caller, "ticket.close", "ticket", ticket_id,
                                  lambda: self.clients.tickets.staff_close(caller, ticket_id))

    # ---- subscriptions (provisioner) --------------------------------------------------------
    async def change_subscription(self, caller: Who, subscription_id: str, action: str,
                                  body: ExtendBody | None = None
                                  ) -> Reply[AdminSubscriptionEnvelope]:
        """`extend` (with its body), `suspend` or `resume`."""
        return await self._remote(
            caller, f"subscription.{action}", "subscription", subscription_id,
            lambda: self.clients.provisioner.change(caller, subscription_id, action, body),
            body.model_dump() if body is not None else None)

    async def link(self, caller: Who, subscription_id: str, action: str):
        """A customer's subscription link rotated (`rotate`) or revoked (`revoke`) by staff;
        the token itself is never recorded."""
        call = (self.clients.provisioner.rotate_link if action == "rotate"
                else self.clients.provisioner.revoke_link)
        return await self._remote(caller, f"subscription.link_{action}", "subscription",
                                  subscription_id,
                                  lambda: call(caller, subscription_id, staff=True))

    # ---- the server pool (provisioner); credentials are never in the audit log ---------------
    async def create_server(self, caller: Who, body: ServerCreate) -> Reply[ServerEnvelope]:
        details = {"name": body.name, "location": body.location, "backend": body.backend}
        async with audited(self.db, caller, "server.create", "server", "new", details) as audit:
            reply = await self.clients.provisioner.create_server(caller, body)
            audit.result(reply.status_code, {**details, "server_id": reply.data.server.id})
        return reply

    async def drain_server(self, caller: Who, server_id: str) -> Reply[DrainOut]:
        """DRAINING, then every access on it moved off, then DISABLED (`provisioner.moves`)."""
        return await self._remote(
            caller, "server.drain", "server", server_id,
            lambda: self.clients.provisioner.drain_server(caller, server_id))

    async def update_server(self, caller: Who, server_id: str,
                            body: ServerUpdate) -> Reply[ServerEnvelope]:
        changes = body.model_dump(exclude_unset=True, exclude={"credentials", "settings"})
        fields = sorted(body.model_fields_set)
        return await self._remote(
            caller, "server.update", "server", server_id,
            lambda: self.clients.provisioner.update_server(caller, server_id, body),
            {**changes, "fields": fields})
