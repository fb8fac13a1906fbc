"""What the pages show and do: calls to the services' internal APIs and to the identity store.

The same calls the `/api/v1` handlers make, with the caller's signed identity, so every rule
(ownership, state machines, validation) is enforced by the service that owns it. Admin mutations
are wrapped in `gateway.audit.audited` with the API's action names, so the audit log cannot tell
a panel click from an API call. A refused call raises the service's error (`AppError` with its
status, code and message); a failed or unreachable service raises `ServiceUnavailable`.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from fastapi import Request

from gateway.api.auth import limit_telegram_links
from gateway.api.deps import Caller
from gateway.audit import audited
from gateway.models import Session, User
from gateway.repository import AuditRepository, UserRepository
from gateway.security import hash_password, token_hash, verify_password
from gateway.service import check_new_password, user_admin_service
from gateway.upstream import UpstreamResponse
from gateway.web.config import web_settings
from runtime.errors import AppError, Conflict, NotFound, ServiceUnavailable, ValidationFailed
from runtime.http import tcp_check
from runtime.logging import get_logger

log = get_logger(__name__)

ANONYMOUS = ("anonymous", "SERVICE")  # what the API sends for calls without a caller
OPEN_INVOICE = {"CREATED", "PENDING"}


def answer(service: str, r: UpstreamResponse) -> dict[str, Any]:
    """The JSON body of a 2xx answer; the service's own error otherwise."""
    if r.status_code >= 500:
        raise ServiceUnavailable(f"The {service} service failed")
    try:
        body = r.json() if r.content else {}
    except ValueError as exc:
        raise ServiceUnavailable(f"The {service} service answered badly") from exc
    if r.status_code >= 400:
        raise AppError(body.get("message"), body.get("details"), code=body.get("code"),
                       status=r.status_code, headers={k: v for k, v in r.headers.items()
                                                      if k.lower() == "retry-after"})
    return body


class Pages:
    def __init__(self, request: Request):
        self.request = request
        self.state = request.app.state

    async def _call(self, service: str, method: str, path: str, who: tuple[str, str],
                    **kwargs) -> dict[str, Any]:
        r = await self.state.upstreams[service].call(method, path, user_id=who[0], role=who[1],
                                                     **kwargs)
        return answer(service, r)

    async def _get(self, service: str, path: str, caller: Caller, **params) -> dict[str, Any]:
        return await self._call(service, "GET", path, (caller.id, caller.role), params=params)

    async def _post(self, service: str, path: str, caller: Caller, body: Any = None,
                    headers: dict[str, str] | None = None) -> dict[str, Any]:
        return await self._call(service, "POST", path, (caller.id, caller.role), json=body,
                                headers=headers)

    async def _audited(self, caller: Caller, action: str, target: tuple[str, str],
                       call: tuple[str, str, str], body: dict | None = None,
                       details: dict | None = None) -> dict[str, Any]:
        """One admin mutation on a service, recorded with the API's action name and details."""
        service, method, path = call
        async with audited(self.request, caller, action, *target, details) as audit:
            r = await self.state.upstreams[service].call(method, path, json=body,
                                                         user_id=caller.id, role=caller.role)
            audit.result(r.status_code, details)
        return answer(service, r)

    # ---- catalogue, invoices, sandbox chain -------------------------------------------------
    async def plans(self, caller: Caller | None = None) -> list[dict]:
        who = (caller.id, caller.role) if caller else ANONYMOUS
        return (await self._call("billing", "GET", "/internal/plans", who))["plans"]

    async def plan(self, caller: Caller, plan_id: str) -> dict:
        for plan in await self.plans(caller):
            if plan["id"] == plan_id:
                return plan
        raise NotFound("This plan is not on sale")

    async def payment_options(self, caller: Caller) -> list[dict]:
        return (await self._get("billing", "/internal/payment-options", caller))["options"]

    async def create_invoice(self, caller: Caller, plan_id: str, asset: str, network: str,
                             idempotency_key: str) -> dict:
        body = {"plan_id": plan_id, "asset": asset, "network": network}
        return (await self._post("billing", "/internal/invoices", caller, body,
                                 headers={"Idempotency-Key": idempotency_key}))["invoice"]

    async def invoices(self, caller: Caller, cursor: str | None = None) -> dict:
        return await self._get("billing", "/internal/invoices", caller, limit=20, cursor=cursor)

    async def invoice(self, caller: Caller, invoice_id: str) -> dict:
        return (await self._get("billing", f"/internal/invoices/{invoice_id}", caller))["invoice"]

    async def cancel_invoice(self, caller: Caller, invoice_id: str) -> dict:
        path = f"/internal/invoices/{invoice_id}/cancel"
        return (await self._post("billing", path, caller))["invoice"]

    async def simulate_payment(self, caller: Caller, invoice_id: str) -> None:
        """Sandbox only: pay the exact amount to the invoice's address, then mine to settle."""
        settings = web_settings()
        if not settings.sandbox:
            raise NotFound("There is no sandbox chain in this configuration")
        invoice = await self.invoice(caller, invoice_id)
        if invoice["status"] not in OPEN_INVOICE or not invoice.get("address"):
            raise Conflict("This invoice is not waiting for a payment")
        amount = format(Decimal(invoice["amount_asset"]).normalize(), "f")
        await self._post("billing", "/internal/sandbox/transfers", caller, {
            "address": invoice["address"], "amount_asset": amount,
            "asset": invoice["asset"], "network": invoice["network"]})
        await self._post("billing", "/internal/sandbox/blocks", caller,
                         {"count": settings.sandbox_confirmations})

    # ---- subscriptions ----------------------------------------------------------------------
    async def subscriptions(self, caller: Caller) -> list[dict]:
        return (await self._get("provisioner", "/internal/subscriptions", caller))["subscriptions"]

    async def access(self, caller: Caller, subscription_id: str) -> dict:
        return await self._get("provisioner", f"/internal/subscriptions/{subscription_id}/access",
                               caller)

    # ---- tickets ----------------------------------------------------------------------------
    async def tickets(self, caller: Caller, status: str | None = None,
                      cursor: str | None = None) -> dict:
        return await self._get("tickets", "/internal/tickets", caller, status=status, limit=20,
                               cursor=cursor)

    async def ticket(self, caller: Caller, ticket_id: str) -> dict:
        return (await self._get("tickets", f"/internal/tickets/{ticket_id}", caller))["ticket"]

    async def open_ticket(self, caller: Caller, subject: str, body: str) -> dict:
        settings = self.state.settings
        await self.state.limiter.hit("ticket-user", caller.id, settings.tickets_per_user_per_hour,
                                     3600)
        return (await self._post("tickets", "/internal/tickets", caller,
                                 {"subject": subject, "body": body}))["ticket"]

    async def reply(self, caller: Caller, ticket_id: str, body: str) -> dict:
        return (await self._post("tickets", f"/internal/tickets/{ticket_id}/messages", caller,
                                 {"body": body}))["message"]

    async def close_ticket(self, caller: Caller, ticket_id: str) -> dict:
        return (await self._post("tickets", f"/internal/tickets/{ticket_id}/close",
                                 caller))["ticket"]

    # ---- account ----------------------------------------------------------------------------
    async def telegram_link(self, caller: Caller) -> dict:
        await limit_telegram_links(self.request, caller.id)
        r = await self.state.upstreams["telegram"].call("POST", "/internal/link-tokens",
                                                        user_id=caller.id, role=caller.role)
        return answer("telegram", r)

    async def change_password(self, caller: Caller, current: str, new: str) -> None:
        """Check the current password, store the new one, sign out every other session."""
        await self.state.limiter.hit("password-user", caller.id, 10, 3600)
        async with self.state.db.transaction() as s:
            user = await UserRepository(s).get(caller.id, for_update=True)
            if user is None or not verify_password(user.password_hash, current):
                raise ValidationFailed("The current password is wrong",
                                       {"field": "current_password"})
            check_new_password(new, user.email, field="new_password")
            user.password_hash = hash_password(new)
            await s.execute(sa.delete(Session).where(
                Session.user_id == user.id, Session.token_hash != token_hash(caller.token)))

    # ---- admin: users and audit log (owned by the gateway) ----------------------------------
    async def search_users(self, q: str | None, cursor: str | None, limit: int = 25
                           ) -> tuple[list[User], str | None]:
        async with self.state.db.transaction() as s:
            users = await UserRepository(s).search(q or None, limit, cursor)
        return users[:limit], (users[limit - 1].id if len(users) > limit else None)

    async def emails(self, user_ids: set[str]) -> dict[str, str]:
        if not user_ids:
            return {}
        async with self.state.db.transaction() as s:
            rows = await s.execute(sa.select(User.id, User.email).where(User.id.in_(user_ids)))
        return dict(rows.tuples().all())

    async def set_blocked(self, caller: Caller, user_id: str, blocked: bool) -> User:
        action = "user.block" if blocked else "user.unblock"
        async with audited(self.request, caller, action, "user", user_id) as audit:
            async with self.state.db.transaction() as s:
                user = await user_admin_service.set_blocked(s, user_id, blocked, caller.id)
            audit.result(200)
        return user

    async def set_role(self, caller: Caller, user_id: str, role: str) -> User:
        async with audited(self.request, caller, "user.role", "user", user_id,
                           {"role": role}) as audit:
            async with self.state.db.transaction() as s:
                user = await user_admin_service.set_role(s, user_id, role, caller.id)
            audit.result(200, {"role": role})
        return user

    async def audit_log(self, before: int | None, limit: int = 50) -> tuple[list, str | None]:
        async with self.state.db.transaction() as s:
            rows = await AuditRepository(s).page(limit, before)
        return rows[:limit], (str(rows[limit - 1].id) if len(rows) > limit else None)

    # ---- admin: support queue ---------------------------------------------------------------
    async def queue(self, caller: Caller, status: str | None, cursor: str | None) -> dict:
        return await self._get("tickets", "/internal/admin/tickets", caller, status=status,
                               limit=25, cursor=cursor)

    async def staff_ticket(self, caller: Caller, ticket_id: str) -> dict:
        path = f"/internal/admin/tickets/{ticket_id}"
        return (await self._get("tickets", path, caller))["ticket"]

    async def answer_ticket(self, caller: Caller, ticket_id: str, body: str) -> dict:
        path = f"/internal/admin/tickets/{ticket_id}/messages"
        return (await self._audited(caller, "ticket.answer", ("ticket", ticket_id),
                                    ("tickets", "POST", path), {"body": body}))["message"]

    async def staff_close(self, caller: Caller, ticket_id: str) -> dict:
        path = f"/internal/admin/tickets/{ticket_id}/close"
        return (await self._audited(caller, "ticket.close", ("ticket", ticket_id),
                                    ("tickets", "POST", path)))["ticket"]

    # ---- admin: plans, invoices, subscriptions ----------------------------------------------
    async def all_plans(self, caller: Caller) -> list[dict]:
        return (await self._get("billing", "/internal/admin/plans", caller))["plans"]

    async def create_plan(self, caller: Caller, body: dict) -> dict:
        async with audited(self.request, caller, "plan.create", "plan", "new",
                           {"name": body["name"]}) as audit:
            r = await self.state.upstreams["billing"].call(
                "POST", "/internal/admin/plans", json=body, user_id=caller.id, role=caller.role)
            created = r.json()["plan"]["id"] if r.status_code == 201 else None
            audit.result(r.status_code, {"plan_id": created} if created else None)
        return answer("billing", r)["plan"]

    async def update_plan(self, caller: Caller, plan_id: str, changes: dict) -> dict:
        return (await self._audited(caller, "plan.update", ("plan", plan_id),
                                    ("billing", "PATCH", f"/internal/admin/plans/{plan_id}"),
                                    changes, changes))["plan"]

    async def all_invoices(self, caller: Caller, status: str | None, cursor: str | None) -> dict:
        return await self._get("billing", "/internal/admin/invoices", caller, status=status,
                               limit=25, cursor=cursor)

    async def any_invoice(self, caller: Caller, invoice_id: str) -> dict:
        path = f"/internal/admin/invoices/{invoice_id}"
        return (await self._get("billing", path, caller))["invoice"]

    async def refund(self, caller: Caller, invoice_id: str, reason: str) -> dict:
        path = f"/internal/admin/invoices/{invoice_id}/refund"
        return (await self._audited(caller, "invoice.refund", ("invoice", invoice_id),
                                    ("billing", "POST", path), {"reason": reason},
                                    {"reason": reason}))["invoice"]

    async def all_subscriptions(self, caller: Caller, user_id: str | None, status: str | None,
                                cursor: str | None) -> dict:
        return await self._get("provisioner", "/internal/admin/subscriptions", caller,
                               user_id=user_id, status=status, limit=25, cursor=cursor)

    async def change_subscription(self, caller: Caller, subscription_id: str, action: str,
                                  days: int | None = None) -> dict:
        body = {"days": days} if action == "extend" else None
        path = f"/internal/admin/subscriptions/{subscription_id}/{action}"
        return (await self._audited(caller, f"subscription.{action}",
                                    ("subscription", subscription_id),
                                    ("provisioner", "POST", path), body, body))["subscription"]

    # ---- admin: system ----------------------------------------------------------------------
    async def queues(self) -> dict | None:
        """Job queue depths, failed jobs and dead letters; None when they cannot be read now."""
        try:
            return await self.state.ops.overview()
        except Exception as exc:  # RabbitMQ or Redis down: the page still shows readiness
            log.warning("ops_overview_failed", error_type=type(exc).__name__)
            return None

    async def replay_dead_letter(self, caller: Caller, dead_letter_id: str) -> dict:
        async with audited(self.request, caller, "dead_letter.replay", "message",
                           dead_letter_id) as audit:
            result = await self.state.ops.replay(dead_letter_id)
            audit.result(200, {"queue": result["queue"]})
        return result

    async def retry_job(self, caller: Caller, queue: str, job_id: str) -> dict:
        async with audited(self.request, caller, "job.retry", "job", f"{queue}/{job_id}") as audit:
            result = await self.state.ops.retry_job(queue, job_id)
            audit.result(200)
        return result

    async def readiness(self) -> list[dict]:
        """Each service's `/readyz` (the gateway's own checks included)."""

        async def upstream(name: str) -> dict:
            try:
                r = await self.state.upstreams[name].call("GET", "/readyz", user_id=ANONYMOUS[0],
                                                           role=ANONYMOUS[1])
            except ServiceUnavailable:
                return {"service": name, "ready": False, "detail": "unreachable"}
            body = r.json() if r.headers.get("content-type", "").startswith("application/json") \
                else {}
            failing = (body.get("details") or {}).get("failing") if r.status_code != 200 else None
            return {"service": name, "ready": r.status_code == 200,
                    "detail": ", ".join(sorted(failing or {})) or body.get("message", "")}

        async def gateway() -> dict:
            try:
                async with self.state.db.engine.connect() as conn:
                    await conn.exec_driver_sql("SELECT 1")
                await self.state.redis.ping()
                await tcp_check(self.state.settings.rabbitmq_url, 5672)()
                return {"service": "gateway", "ready": True, "detail": ""}
            except Exception as exc:
                return {"service": "gateway", "ready": False, "detail": type(exc).__name__}

        names = sorted(self.state.upstreams)
        results = await asyncio.gather(gateway(), *(upstream(n) for n in names))
        checked = datetime.now(UTC)
        return [{**r, "checked_at": checked} for r in results]
