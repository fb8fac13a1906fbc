"""What the pages show and do, through the same clients and gateway services as `/api/v1`.

Every read goes through a typed client (`gateway.clients`) and is handed to the templates in its
checked JSON form; every mutation is the API's own (`gateway.account`, `gateway.actions`), so the
audit log cannot tell a panel click from an API call. Nothing here opens a transaction. A refused
call raises the service's error (`AppError` with its status, code and message); a failed or
unreachable service raises `ServiceUnavailable`.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

from fastapi import Request

from contracts.public.billing import (
    OPEN_INVOICE_STATUSES,
    AdjustmentBody,
    BlocksBody,
    InvoiceCreate,
    PlanCreate,
    PlanUpdate,
    PromoCodeCreate,
    PromoCodeUpdate,
    RefundBody,
    TopUpCreate,
    TransferBody,
)
from contracts.public.servers import ServerCreate, ServerUpdate
from contracts.public.subscriptions import ExtendBody
from contracts.public.tickets import MessageCreate, TicketCreate
from gateway import desk
from gateway.api.deps import Caller
from gateway.clients import ANONYMOUS
from gateway.models import User
from gateway.service import user_admin_service
from gateway.web.config import web_settings
from runtime.errors import AppError, Conflict, NotFound, ServiceUnavailable


class Pages:
    def __init__(self, request: Request):
        self.request = request
        self.state = request.app.state
        self.clients = request.app.state.clients
        self.actions = request.app.state.actions

    # ---- catalogue, invoices, sandbox chain -------------------------------------------------
    async def plans(self, caller: Caller | None = None) -> list[dict]:
        return (await self.clients.billing.plans(caller or ANONYMOUS)).json()["plans"]

    async def plan(self, caller: Caller, plan_id: str) -> dict:
        for plan in await self.plans(caller):
            if plan["id"] == plan_id:
                return plan
        raise NotFound("This plan is not on sale")

    async def payment_options(self, caller: Caller) -> list[dict]:
        return (await self.clients.billing.payment_options(caller)).json()["options"]

    async def create_invoice(self, caller: Caller, body: InvoiceCreate,
                             idempotency_key: str) -> dict:
        await self.state.limits.invoice(caller.id)
        reply = await self.clients.billing.create_invoice(caller, body, idempotency_key)
        return reply.json()["invoice"]

    async def promo_preview(self, caller: Caller, code: str, plan_id: str) -> dict:
        return (await self.clients.billing.promo_preview(caller, code, plan_id)).json()

    async def promo_codes(self, caller: Caller) -> list[dict]:
        return (await self.clients.billing.admin_promo_codes(caller)).json()["promo_codes"]

    async def create_promo_code(self, caller: Caller, body: PromoCodeCreate) -> dict:
        return (await self.actions.create_promo_code(caller, body)).json()["promo_code"]

    async def update_promo_code(self, caller: Caller, code_id: str,
                                body: PromoCodeUpdate) -> dict:
        return (await self.actions.update_promo_code(caller, code_id, body)).json()["promo_code"]

    async def renewal_cover(self, caller: Caller, plan_id: str) -> dict:
        return (await self.clients.billing.renewal_cover(caller, plan_id)).json()

    async def balance(self, caller: Caller, cursor: str | None = None) -> dict:
        return (await self.clients.billing.balance(caller, 20, cursor)).json()

    async def referrals(self, caller: Caller) -> dict:
        return (await self.clients.billing.referrals(caller)).json()

    async def top_up(self, caller: Caller, body: TopUpCreate, idempotency_key: str) -> dict:
        await self.state.limits.invoice(caller.id)  # a top-up is an invoice
        reply = await self.clients.billing.top_up(caller, body, idempotency_key)
        return reply.json()["invoice"]

    async def admin_balance(self, caller: Caller, user_id: str,
                            cursor: str | None = None) -> dict:
        return (await self.clients.billing.admin_balance(caller, user_id, 20, cursor)).json()

    async def adjust_balance(self, caller: Caller, user_id: str, body: AdjustmentBody,
                             idempotency_key: str) -> dict:
        reply = await self.actions.adjust_balance(caller, user_id, body, idempotency_key)
        return reply.json()

    async def invoices(self, caller: Caller, cursor: str | None = None) -> dict:
        return (await self.clients.billing.invoices(caller, 20, cursor)).json()

    async def invoice(self, caller: Caller, invoice_id: str) -> dict:
        return (await self.clients.billing.invoice(caller, invoice_id)).json()["invoice"]

    async def cancel_invoice(self, caller: Caller, invoice_id: str) -> dict:
        return (await self.clients.billing.cancel_invoice(caller, invoice_id)).json()["invoice"]

    async def simulate_payment(self, caller: Caller, invoice_id: str) -> None:
        """Sandbox only: pay the exact amount to the invoice's address, then mine to settle."""
        settings = web_settings()
        if not settings.sandbox:
            raise NotFound("There is no sandbox chain in this configuration")
        invoice = (await self.clients.billing.invoice(caller, invoice_id)).data.invoice
        if invoice.status not in OPEN_INVOICE_STATUSES or not invoice.address:
            raise Conflict("This invoice is not waiting for a payment")
        amount = format(Decimal(invoice.amount_asset).normalize(), "f")
        await self.clients.billing.sandbox_transfer(caller, TransferBody(
            address=invoice.address, amount_asset=amount, asset=invoice.asset,
            network=invoice.network))
        await self.clients.billing.sandbox_blocks(
            caller, BlocksBody(count=settings.sandbox_confirmations))

    # ---- subscriptions ----------------------------------------------------------------------
    async def subscriptions(self, caller: Caller) -> list[dict]:
        return (await self.clients.provisioner.subscriptions(caller)).json()["subscriptions"]

    async def backend(self, caller: Caller | None = None) -> dict | None:
        """What the VPN backend enforces (the plan pages promise only that); None while the
        provisioner cannot say (away, or refusing: the page then promises only the days)."""
        try:
            return (await self.clients.provisioner.capabilities(caller or ANONYMOUS)).json()
        except AppError:
            return None

    async def usage(self, caller: Caller, subscription_id: str) -> dict | None:
        """The subscription's use, or None while the panel cannot say (the page goes on)."""
        try:
            return (await self.clients.provisioner.usage(caller, subscription_id)).json()
        except ServiceUnavailable:
            return None

    async def applied_grant(self, caller: Caller, invoice_id: str) -> dict | None:
        """The paid invoice's grant once its time is on the subscription, else None."""
        try:
            grant = (await self.clients.provisioner.grant(caller, invoice_id)).json()
        except AppError as exc:
            if exc.status != 404:
                raise
            return None
        return grant if grant["status"] == "APPLIED" else None

    async def access(self, caller: Caller, subscription_id: str) -> dict:
        return (await self.clients.provisioner.access(caller, subscription_id)).json()

    # ---- tickets ----------------------------------------------------------------------------
    async def tickets(self, caller: Caller, status: str | None = None,
                      cursor: str | None = None) -> dict:
        return (await self.clients.tickets.tickets(caller, status=status, limit=20,
                                                   cursor=cursor)).json()

    async def ticket(self, caller: Caller, ticket_id: str) -> dict:
        return (await self.clients.tickets.ticket(caller, ticket_id)).json()["ticket"]

    async def open_ticket(self, caller: Caller, body: TicketCreate) -> dict:
        await self.state.limits.new_ticket(caller.id)
        return (await self.clients.tickets.open(caller, body)).json()["ticket"]

    async def reply(self, caller: Caller, ticket_id: str, body: MessageCreate) -> dict:
        await self.state.limits.reply(caller.id, ticket_id)
        return (await self.clients.tickets.reply(caller, ticket_id, body)).json()["message"]

    async def close_ticket(self, caller: Caller, ticket_id: str) -> dict:
        return (await self.clients.tickets.close(caller, ticket_id)).json()["ticket"]

    # ---- account ----------------------------------------------------------------------------
    async def telegram_link(self, caller: Caller) -> dict:
        return (await self.state.account.telegram_link(caller)).json()

    async def change_password(self, caller: Caller, current: str, new: str) -> None:
        await self.state.account.change_password(caller.id, caller.token, current, new)

    # ---- admin: users and audit log (owned by the gateway) ----------------------------------
    async def search_users(self, q: str | None, cursor: str | None, limit: int = 25
                           ) -> tuple[list[User], str | None]:
        return await user_admin_service.search(self.state.db, q or None, limit, cursor)

    async def emails(self, user_ids: set[str]) -> dict[str, str]:
        return await user_admin_service.emails(self.state.db, user_ids)

    async def email(self, user_id: str) -> str | None:
        return (await self.emails({user_id})).get(user_id)

    async def set_blocked(self, caller: Caller, user_id: str, blocked: bool) -> User:
        return await self.actions.set_blocked(caller, user_id, blocked)

    async def set_role(self, caller: Caller, user_id: str, role: str) -> User:
        return await self.actions.set_role(caller, user_id, role)

    async def audit_log(self, before: int | None, limit: int = 50) -> tuple[list, str | None]:
        return await user_admin_service.audit_page(self.state.db, before, limit)

    # ---- admin: support queue ---------------------------------------------------------------
    async def queue(self, caller: Caller, status: str | None, cursor: str | None) -> dict:
        return (await self.clients.tickets.queue(caller, status=status, limit=25,
                                                 cursor=cursor)).json()

    async def staff_ticket(self, caller: Caller, ticket_id: str, customer: bool = False) -> dict:
        """The staff view of a ticket; with `customer`, its customer card too (the ticket
        page, not its thread's polling)."""
        if customer:
            envelope = await desk.staff_ticket(self.state.db, self.clients, caller, ticket_id)
            return envelope.model_dump(mode="json")["ticket"]
        return (await self.clients.tickets.staff_ticket(caller, ticket_id)).json()["ticket"]

    async def answer_ticket(self, caller: Caller, ticket_id: str, body: MessageCreate) -> dict:
        return (await self.actions.answer_ticket(caller, ticket_id, body)).json()["message"]

    async def staff_close(self, caller: Caller, ticket_id: str) -> dict:
        return (await self.actions.close_ticket(caller, ticket_id)).json()["ticket"]

    # ---- admin: plans, invoices, subscriptions ----------------------------------------------
    async def all_plans(self, caller: Caller) -> list[dict]:
        return (await self.clients.billing.admin_plans(caller)).json()["plans"]

    async def create_plan(self, caller: Caller, body: PlanCreate) -> dict:
        return (await self.actions.create_plan(caller, body)).json()["plan"]

    async def update_plan(self, caller: Caller, plan_id: str, body: PlanUpdate) -> dict:
        return (await self.actions.update_plan(caller, plan_id, body)).json()["plan"]

    async def all_invoices(self, caller: Caller, status: str | None, cursor: str | None) -> dict:
        return (await self.clients.billing.admin_invoices(caller, status=status, limit=25,
                                                          cursor=cursor)).json()

    async def any_invoice(self, caller: Caller, invoice_id: str) -> dict:
        return (await self.clients.billing.admin_invoice(caller, invoice_id)).json()["invoice"]

    async def refund(self, caller: Caller, invoice_id: str, body: RefundBody) -> dict:
        return (await self.actions.refund(caller, invoice_id, body)).json()["invoice"]

    async def all_subscriptions(self, caller: Caller, user_id: str | None, status: str | None,
                                cursor: str | None) -> dict:
        return (await self.clients.provisioner.admin_subscriptions(
            caller, user_id=user_id, status=status, limit=25, cursor=cursor)).json()

    async def servers(self, caller: Caller) -> list[dict]:
        return (await self.clients.provisioner.servers(caller)).json()["servers"]

    async def create_server(self, caller: Caller, body: ServerCreate) -> dict:
        return (await self.actions.create_server(caller, body)).json()["server"]

    async def update_server(self, caller: Caller, server_id: str, body: ServerUpdate) -> dict:
        return (await self.actions.update_server(caller, server_id, body)).json()["server"]

    async def drain_server(self, caller: Caller, server_id: str) -> dict:
        return (await self.actions.drain_server(caller, server_id)).json()

    async def change_subscription(self, caller: Caller, subscription_id: str, action: str,
                                  body: ExtendBody | None = None) -> dict:
        reply = await self.actions.change_subscription(caller, subscription_id, action, body)
        return reply.json()["subscription"]

    # ---- admin: system ----------------------------------------------------------------------
    async def queues(self, caller: Caller) -> dict:
        """Job queue depths, failed jobs and dead letters of every service that can be read
        now; `unavailable` names the others."""
        return await self.state.ops.overview(caller)

    async def replay_dead_letter(self, caller: Caller, dead_letter_id: str) -> dict:
        return await self.state.ops.replay(caller, dead_letter_id)

    async def retry_job(self, caller: Caller, queue: str, job_id: str) -> dict:
        return await self.state.ops.retry_job(caller, queue, job_id)

    async def readiness(self) -> list[dict]:
        """Each service's `/readyz` (the gateway's own checks included)."""

        async def upstream(client) -> dict:
            try:
                status, body = await client.ready()
            except ServiceUnavailable:
                return {"service": client.name, "ready": False, "detail": "unreachable"}
            failing = (body.get("details") or {}).get("failing") if status != 200 else None
            return {"service": client.name, "ready": status == 200,
                    "detail": ", ".join(sorted(failing or {})) or body.get("message", "")}

        async def gateway() -> dict:
            try:
                for check in self.state.readiness.values():
                    await asyncio.wait_for(check(), timeout=2)
                return {"service": "gateway", "ready": True, "detail": ""}
            except Exception as exc:
                return {"service": "gateway", "ready": False, "detail": type(exc).__name__}

        clients = sorted(self.clients.all(), key=lambda c: c.name)
        results = await asyncio.gather(gateway(), *(upstream(c) for c in clients))
        checked = datetime.now(UTC)
        return [{**r, "checked_at": checked} for r in results]
