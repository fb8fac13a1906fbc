"""A real HTTP server standing in for the services behind the gateway.

It answers the internal API's paths with bodies that match the public schemas (or with whatever a
test sets), checks the signed identity header on every call the way a service does, and records
each call, so the gateway's clients, limits and audit are tested over real HTTP.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from runtime import identity
from runtime.errors import AppError

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC).isoformat()
KEY = "gateway-tests-signing-key-0123456789abcdef"

PLAN = {"id": "p1", "name": "Month", "description": None, "price_usd": "4.99",
        "duration_days": 30, "max_devices": 3}
ADMIN_PLAN = {**PLAN, "is_active": True, "created_at": NOW, "updated_at": NOW}
INVOICE = {"id": "inv-new", "status": "PENDING", "plan_id": "p1", "amount_usd": "4.99",
           "asset": "USDT", "network": "TRON", "provider": "sandbox", "amount_asset": "4.99",
           "address": "TAddr",
           "payment_url": None, "rate_locked_until": NOW, "created_at": NOW, "paid_at": None,
           "payments": []}
ADMIN_INVOICE = {**INVOICE, "status": "REFUNDED", "user_id": "u1", "plan_name": "Month",
                 "plan_duration_days": 30, "plan_max_devices": 3, "provider": "sandbox",
                 "provider_ref": None, "rate_usd": "1", "amount_received_asset": "4.99",
                 "overpaid_asset": "0", "underpaid_asset": "0", "late_amount_asset": "0",
                 "needs_review": False, "expired_at": None, "canceled_at": None,
                 "refunded_at": NOW, "refund_reason": "asked", "payments": []}
MESSAGE = {"id": "m1", "author_role": "USER", "body": "hello", "origin": "WEB", "created_at": NOW}
TICKET = {"id": "t-new", "subject": "No handshake", "status": "OPEN", "source": "WEB",
          "created_at": NOW, "last_message_at": NOW, "messages": [MESSAGE]}
SUBSCRIPTION = {"id": "s1", "plan_id": "p1", "status": "ACTIVE", "started_at": NOW,
                "expires_at": NOW, "max_devices": 3}
ADMIN_SUBSCRIPTION = {**SUBSCRIPTION, "user_id": "u1", "backend": "sandbox",
                      "suspend_reason": None, "created_at": NOW, "updated_at": NOW}

# (method, path pattern) → (status, body): what each service answers unless a test says else.
ANSWERS: dict[str, dict[tuple[str, str], tuple[int, Any]]] = {
    "billing": {
        ("GET", r"/internal/plans"): (200, {"plans": [PLAN]}),
        ("GET", r"/internal/payment-options"): (200, {"options": [
            {"provider": "sandbox", "asset": "USDT", "network": "TRON",
             "label": "USDT · TRON · Sandbox chain"},
            {"provider": "btcpay", "asset": "USDT", "network": "TRON",
             "label": "USDT · TRON · BTCPay"}]}),
        ("POST", r"/internal/invoices"): (201, {"invoice": INVOICE}),
        ("GET", r"/internal/invoices/[^/]+"): (200, {"invoice": INVOICE}),
        ("GET", r"/internal/balance"): (200, {"balance_usd": "0.00", "entries": [],
                                             "next_cursor": None}),
        ("GET", r"/internal/admin/plans"): (200, {"plans": [ADMIN_PLAN]}),
        ("POST", r"/internal/admin/plans"): (201, {"plan": ADMIN_PLAN}),
        ("PATCH", r"/internal/admin/plans/[^/]+"): (200, {"plan": ADMIN_PLAN}),
        ("GET", r"/internal/admin/invoices/[^/]+"): (200, {"invoice": {**ADMIN_INVOICE,
                                                                    "status": "PAID"}}),
        ("POST", r"/internal/admin/invoices/[^/]+/refund"): (200, {"invoice": ADMIN_INVOICE}),
        ("POST", r"/internal/webhooks/[^/]+"): (200, {"ok": True}),
    },
    "tickets": {
        ("POST", r"/internal/tickets"): (201, {"ticket": TICKET}),
        ("GET", r"/internal/tickets/[^/]+"): (200, {"ticket": TICKET}),
        ("POST", r"/internal/tickets/[^/]+/messages"): (201, {"message": MESSAGE}),
        ("GET", r"/internal/admin/tickets/[^/]+"): (200, {"ticket": {**TICKET, "user_id": "u1"}}),
        ("POST", r"/internal/admin/tickets/[^/]+/messages"): (201, {"message": {
            **MESSAGE, "author_role": "SUPPORT", "origin": "ADMIN"}}),
        ("POST", r"/internal/admin/tickets/[^/]+/close"): (200, {"ticket": {
            **TICKET, "status": "CLOSED", "user_id": "u1"}}),
    },
    "provisioner": {
        ("GET", r"/internal/subscriptions"): (200, {"subscriptions": [SUBSCRIPTION]}),
        ("POST", r"/internal/admin/subscriptions/[^/]+/(extend|suspend|resume)"): (
            200, {"subscription": ADMIN_SUBSCRIPTION}),
    },
    "telegram": {
        ("POST", r"/internal/link-tokens"): (201, {"url": "https://t.me/bot?start=x",
                                                   "expires_at": NOW}),
    },
}


@dataclass
class Call:
    service: str
    method: str
    path: str
    user_id: str
    role: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeServices:
    """One HTTP server per service name; `calls` in arrival order, `set` to change an answer."""

    base_urls: dict[str, str] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    overrides: dict[tuple[str, str, str], tuple[int, Any, dict]] = field(default_factory=dict)
    runners: list[web.AppRunner] = field(default_factory=list)

    def set(self, service: str, method: str, path_pattern: str, status: int, body: Any,
            headers: dict | None = None) -> None:
        self.overrides[(service, method, path_pattern)] = (status, body, headers or {})

    def writes(self, service: str) -> list[str]:
        return [f"{c.method} {c.path}" for c in self.calls
                if c.service == service and c.method != "GET"]

    def _answer(self, service: str, method: str, path: str) -> tuple[int, Any, dict]:
        for (svc, m, pattern), answer in self.overrides.items():
            if svc == service and m == method and re.fullmatch(pattern, path):
                return answer
        for (m, pattern), (status, body) in ANSWERS[service].items():
            if m == method and re.fullmatch(pattern, path):
                return status, body, {}
        return 404, {"code": "NOT_FOUND", "message": "Not found"}, {}

    def _app(self, service: str) -> web.Application:
        async def handle(request: web.Request) -> web.Response:
            if request.path == "/readyz":
                return web.json_response({"status": "ready"})
            try:
                who = identity.verify(KEY, request.headers.get(identity.HEADER),
                                      audience=service)
            except AppError as exc:
                return web.json_response(exc.body(), status=exc.status)
            path = request.raw_path.split("?", 1)[0]  # as sent: ids stay percent-encoded
            self.calls.append(Call(service, request.method, path, who.user_id, who.role,
                                   dict(request.headers), await request.read()))
            status, body, headers = self._answer(service, request.method, path)
            return web.json_response(body, status=status, headers=headers)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        return app

    async def start(self) -> None:
        for service in ANSWERS:
            runner = web.AppRunner(self._app(service))
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]
            self.base_urls[service] = f"http://127.0.0.1:{port}"
            self.runners.append(runner)

    async def stop(self) -> None:
        for runner in self.runners:
            await runner.cleanup()

    def settings(self) -> dict[str, str]:
        """The gateway settings that point its clients here."""
        return {"BILLING_URL": self.base_urls["billing"],
                "TICKETS_URL": self.base_urls["tickets"],
                "PROVISIONER_URL": self.base_urls["provisioner"],
                "TELEGRAM_URL": self.base_urls["telegram"],
                "INTERNAL_SIGNING_KEY": KEY}
