"""BTCPay Server fake: a real HTTP server speaking the Greenfield API subset billing uses.

Owns the fake side of the BTCPay integration and nothing else:

* Greenfield (auth ``Authorization: token <API_KEY>``): ``POST/GET
  /api/v1/stores/{storeId}/invoices``, ``GET .../invoices/{invoiceId}``, ``GET
  .../invoices/{invoiceId}/payment-methods``, ``POST .../invoices/{invoiceId}/status``
  (mark ``Settled``/``Invalid``), ``POST/GET /api/v1/stores/{storeId}/webhooks``. Answers use
  BTCPay's shapes: amounts as strings, unix-second timestamps, ``status`` New / Processing /
  Settled / Expired / Invalid with ``additionalStatus`` None / PaidLate / PaidPartial / Marked /
  Invalid / PaidOver, errors ``{"code", "message"}`` (422: a list of ``{"path", "message"}``).
* webhooks: JSON bodies with ``deliveryId``, ``webhookId``, ``originalDeliveryId``,
  ``isRedelivery``, ``type``, ``timestamp``, ``storeId``, ``invoiceId`` (+ ``manuallyMarked``,
  ``overPaid`` on InvoiceSettled, ``partiallyPaid`` on InvoiceExpired, ``afterExpiration``,
  ``paymentMethod``, ``payment`` on InvoiceReceivedPayment), signed ``BTCPay-Sig:
  sha256=<hex HMAC-SHA256(secret, raw body)>``; a failed delivery is retried with the same
  delivery id on BTCPay's schedule (10 s, 1 min, then every 10 min, 6 times; configurable), and
  a manual redelivery gets a new ``deliveryId`` with ``isRedelivery: true``.
* a control API under ``/_fake`` (no auth) for tests: customer payments (optionally settled,
  optionally without webhooks to simulate a lost one), settling pending payments, expiring an
  invoice, listing deliveries, redelivering, reset.

An invoice whose ``expirationTime`` passed while still ``New`` becomes ``Expired`` when next
read, as on the real server (which expires it in the background).

Run it: ``python -m fakes.btcpay --host 127.0.0.1 --port 23000``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse

__all__ = ["BTCPayFake", "FakeConfig", "create_app", "main", "sign"]

log = logging.getLogger("fakes.btcpay")

DEFAULT_API_KEY = "test-btcpay-api-key"
DEFAULT_STORE_ID = "TestStore1"
DEFAULT_WEBHOOK_SECRET = "dev-btcpay-webhook-secret"
# BTCPay's automatic redelivery: after 10 s, 1 min, then up to 6 times every 10 min.
REAL_RETRY_DELAYS = (10.0, 60.0, 600.0, 600.0, 600.0, 600.0, 600.0, 600.0)
PAYMENT_METHOD = "BTC-CHAIN"
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _new_id(length: int = 22) -> str:
    return "".join(secrets.choice(_B58) for _ in range(length))


def _fmt(value: Decimal) -> str:
    return format(value.normalize(), "f") if value else "0"


@dataclass(frozen=True)
class FakeConfig:
    api_key: str = DEFAULT_API_KEY
    store_id: str = DEFAULT_STORE_ID
    public_url: str = "http://127.0.0.1:23000"
    webhook_url: str | None = None
    webhook_secret: str = DEFAULT_WEBHOOK_SECRET
    retry_delays: tuple[float, ...] = REAL_RETRY_DELAYS
    webhook_timeout: float = 10.0
    btc_per_usd_rate: Decimal = Decimal("60000")  # USD per BTC, for invoices priced in USD

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> FakeConfig:
        env = os.environ if env is None else env
        return cls(
            api_key=env.get("BTCPAY_API_KEY") or DEFAULT_API_KEY,
            store_id=env.get("BTCPAY_STORE_ID") or DEFAULT_STORE_ID,
            public_url=env.get("BTCPAY_URL") or cls.public_url,
            webhook_url=env.get("FAKE_BTCPAY_WEBHOOK_URL") or None,
            webhook_secret=env.get("BTCPAY_WEBHOOK_SECRET") or DEFAULT_WEBHOOK_SECRET,
        )


class GreenfieldError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class ValidationErrors(Exception):
    def __init__(self, errors: list[dict[str, str]]):
        super().__init__("validation failed")
        self.errors = errors


@dataclass
class FakePayment:
    id: str
    value: Decimal
    status: str  # Processing | Settled | Invalid
    received: int
    destination: str

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "receivedDate": self.received, "value": _fmt(self.value),
                "fee": "0", "status": self.status, "destination": self.destination}


@dataclass
class FakeInvoice:
    id: str
    store_id: str
    amount: Decimal
    currency: str
    metadata: dict[str, Any]
    checkout: dict[str, Any]
    created: int
    expiration: int
    monitoring_expiration: int
    destination: str
    status: str = "New"
    additional_status: str = "None"
    payments: list[FakePayment] = field(default_factory=list)

    def paid(self) -> Decimal:
        return sum((p.value for p in self.payments if p.status != "Invalid"), Decimal(0))


@dataclass
class Webhook:
    id: str
    url: str
    secret: str
    enabled: bool = True

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "url": self.url, "enabled": self.enabled,
                "automaticRedelivery": True, "authorizedEvents": {"everything": True}}


@dataclass
class Delivery:
    id: str
    webhook_id: str
    type: str
    invoice_id: str
    body: bytes
    attempts: list[dict[str, Any]] = field(default_factory=list)

    def public(self) -> dict[str, Any]:
        last = self.attempts[-1] if self.attempts else {}
        return {"id": self.id, "webhookId": self.webhook_id, "type": self.type,
                "invoiceId": self.invoice_id, "body": json.loads(self.body),
                "attempts": self.attempts, "statusCode": last.get("status_code"),
                "ok": bool(last.get("ok"))}


class BTCPayFake:
    """The fake server's world: invoices, payments, registered webhooks, delivery log."""

    def __init__(self, config: FakeConfig, transport: httpx.AsyncBaseTransport | None = None):
        self.config = config
        self.transport = transport
        self.reset()

    def reset(self) -> None:
        self.invoices: dict[str, FakeInvoice] = {}
        self.webhooks: dict[str, Webhook] = {}
        self.deliveries: dict[str, Delivery] = {}
        self.retry_tasks: set[asyncio.Task] = set()
        if self.config.webhook_url:
            hook = Webhook(_new_id(), self.config.webhook_url, self.config.webhook_secret)
            self.webhooks[hook.id] = hook

    # ----------------------------------------------------------------- Greenfield side

    def check_auth(self, request: Request, store_id: str) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "token" or not hmac.compare_digest(token.strip().encode(),
                                                                self.config.api_key.encode()):
            raise GreenfieldError(401, "unauthenticated", "Authentication is required")
        if store_id != self.config.store_id:
            raise GreenfieldError(403, "missing-permission",
                                  "Insufficient permission for the store")

    def get(self, invoice_id: str) -> FakeInvoice:
        inv = self.invoices.get(invoice_id)
        if inv is None:
            raise GreenfieldError(404, "invoice-not-found", "The invoice was not found")
        return inv

    def invoice_json(self, inv: FakeInvoice) -> dict[str, Any]:
        return {
            "id": inv.id, "storeId": inv.store_id, "amount": _fmt(inv.amount),
            "currency": inv.currency, "type": "Standard",
            "checkoutLink": f"{self.config.public_url.rstrip('/')}/i/{inv.id}",
            "status": inv.status, "additionalStatus": inv.additional_status,
            "createdTime": inv.created, "expirationTime": inv.expiration,
            "monitoringExpiration": inv.monitoring_expiration, "archived": False,
            "metadata": inv.metadata, "checkout": inv.checkout,
            "availableStatusesForManualMarking": self._markable(inv),
        }

    @staticmethod
    def _markable(inv: FakeInvoice) -> list[str]:
        if inv.status in ("Settled", "Invalid") and inv.additional_status != "Marked":
            return []
        return [s for s in ("Settled", "Invalid") if s != inv.status]

    def _rate(self, inv: FakeInvoice) -> Decimal:
        return Decimal(1) if inv.currency.upper() == "BTC" else self.config.btc_per_usd_rate

    def payment_methods_json(self, inv: FakeInvoice) -> list[dict[str, Any]]:
        rate = self._rate(inv)
        due_btc = (inv.amount / rate).quantize(Decimal("0.00000001"))
        paid = inv.paid()
        return [{
            "paymentMethod": "BTC", "cryptoCode": "BTC", "destination": inv.destination,
            "paymentLink": f"bitcoin:{inv.destination}?amount={_fmt(due_btc)}",
            "rate": _fmt(rate), "paymentMethodPaid": _fmt(paid), "totalPaid": _fmt(paid),
            "due": _fmt(due_btc - paid), "amount": _fmt(due_btc), "networkFee": "0",
            "payments": [p.public() for p in inv.payments], "activated": True,
            "additionalData": {},
        }]

    def create_invoice(self, store_id: str, body: Any) -> FakeInvoice:
        if not isinstance(body, dict):
            raise ValidationErrors([{"path": "", "message": "Invalid request body"}])
        errors = []
        amount = Decimal(0)
        raw_amount = body.get("amount")
        if raw_amount is not None:
            try:
                amount = Decimal(str(raw_amount))
                if amount < 0 or not amount.is_finite():
                    raise InvalidOperation
            except (InvalidOperation, ValueError):
                errors.append({"path": "amount", "message": "Amount should be a positive number"})
        currency = body.get("currency") or "USD"
        if not isinstance(currency, str) or not 2 <= len(currency) <= 10:
            errors.append({"path": "currency", "message": "Invalid currency"})
        checkout = body.get("checkout") or {}
        metadata = body.get("metadata") or {}
        if not isinstance(checkout, dict):
            errors.append({"path": "checkout", "message": "Invalid checkout options"})
            checkout = {}
        if not isinstance(metadata, dict):
            errors.append({"path": "metadata", "message": "Metadata should be an object"})
        expiration = checkout.get("expirationMinutes") or 15
        monitoring = checkout.get("monitoringMinutes") or 60
        for name, value in (("expirationMinutes", expiration), ("monitoringMinutes", monitoring)):
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                errors.append({"path": f"checkout.{name}", "message": f"{name} must be > 0"})
        if errors:
            raise ValidationErrors(errors)
        now = int(time.time())
        inv = FakeInvoice(
            id=_new_id(), store_id=store_id, amount=amount, currency=currency.upper(),
            metadata=metadata, created=now,
            checkout={"speedPolicy": checkout.get("speedPolicy", "MediumSpeed"),
                      "expirationMinutes": expiration, "monitoringMinutes": monitoring,
                      "paymentTolerance": checkout.get("paymentTolerance", 0),
                      "redirectURL": checkout.get("redirectURL"),
                      "paymentMethods": ["BTC"], "defaultPaymentMethod": "BTC"},
            expiration=now + int(expiration * 60),
            monitoring_expiration=now + int(expiration * 60) + int(monitoring * 60),
            destination="bcrt1q" + secrets.token_hex(19))
        self.invoices[inv.id] = inv
        return inv

    # ----------------------------------------------------------------- invoice life

    def expire_if_due(self, inv: FakeInvoice) -> list[dict[str, Any]]:
        if inv.status == "New" and time.time() >= inv.expiration:
            return self.expire(inv)
        return []

    def expire(self, inv: FakeInvoice) -> list[dict[str, Any]]:
        if inv.status != "New":
            raise GreenfieldError(400, "invalid-state", f"A {inv.status} invoice cannot expire")
        partial = inv.paid() > 0
        inv.status = "Expired"
        inv.additional_status = "PaidPartial" if partial else "None"
        return [{"type": "InvoiceExpired", "partiallyPaid": partial}]

    def add_payment(self, inv: FakeInvoice, value: Decimal, *, settled: bool,
                    txid: str | None = None) -> list[dict[str, Any]]:
        events = self.expire_if_due(inv)
        after_expiration = inv.status == "Expired"
        payment = FakePayment(id=txid or f"{secrets.token_hex(32)}-0", value=value,
                              status="Settled" if settled else "Processing",
                              received=int(time.time()), destination=inv.destination)
        inv.payments.append(payment)
        events.append({"type": "InvoiceReceivedPayment", "afterExpiration": after_expiration,
                       "paymentMethod": PAYMENT_METHOD, "payment": payment.public()})
        if settled:
            events.append({"type": "InvoicePaymentSettled", "afterExpiration": after_expiration,
                           "paymentMethod": PAYMENT_METHOD, "payment": payment.public()})
        return events + self._recompute(inv, after_expiration)

    def settle_payments(self, inv: FakeInvoice) -> list[dict[str, Any]]:
        events = []
        for p in inv.payments:
            if p.status == "Processing":
                p.status = "Settled"
                events.append({"type": "InvoicePaymentSettled", "afterExpiration": False,
                               "paymentMethod": PAYMENT_METHOD, "payment": p.public()})
        return events + self._recompute(inv, inv.additional_status == "PaidLate")

    def _recompute(self, inv: FakeInvoice, late: bool) -> list[dict[str, Any]]:
        if inv.status in ("Invalid",) or inv.additional_status == "Marked":
            return []
        due = inv.amount / self._rate(inv)
        paid = inv.paid()
        if paid < due:
            if paid > 0:
                inv.additional_status = "PaidPartial"
            return []
        over = paid > due
        inv.additional_status = "PaidOver" if over else ("PaidLate" if late else "None")
        all_settled = all(p.status == "Settled" for p in inv.payments if p.status != "Invalid")
        new_status = "Settled" if all_settled else "Processing"
        if new_status == inv.status:
            return []
        inv.status = new_status
        if new_status == "Settled":
            return [{"type": "InvoiceSettled", "manuallyMarked": False, "overPaid": over}]
        return [{"type": "InvoiceProcessing", "overPaid": over}]

    def mark(self, inv: FakeInvoice, status: Any) -> list[dict[str, Any]]:
        if status not in self._markable(inv):
            raise GreenfieldError(400, "invoice-not-markable",
                                  f"Cannot mark a {inv.status} invoice as {status}")
        inv.status = status
        inv.additional_status = "Marked"
        if status == "Settled":
            return [{"type": "InvoiceSettled", "manuallyMarked": True, "overPaid": False}]
        return [{"type": "InvoiceInvalid", "manuallyMarked": True}]

    # ----------------------------------------------------------------- webhooks

    def build_deliveries(self, inv: FakeInvoice, events: list[dict[str, Any]]) -> list[Delivery]:
        out = []
        for event in events:
            for hook in self.webhooks.values():
                if not hook.enabled:
                    continue
                delivery_id = _new_id()
                body = {"deliveryId": delivery_id, "webhookId": hook.id,
                        "originalDeliveryId": delivery_id, "isRedelivery": False,
                        "timestamp": int(time.time()), "storeId": inv.store_id,
                        "invoiceId": inv.id, "metadata": inv.metadata, **event}
                d = Delivery(id=delivery_id, webhook_id=hook.id, type=event["type"],
                             invoice_id=inv.id, body=json.dumps(body).encode())
                self.deliveries[d.id] = d
                out.append(d)
        return out

    async def send(self, delivery: Delivery, *, retry: bool = True) -> None:
        """One attempt now; on failure, BTCPay's retries (same delivery id) in the background."""
        hook = self.webhooks.get(delivery.webhook_id)
        if hook is None:
            return
        ok = await self._attempt(hook, delivery)
        if not ok and retry and self.config.retry_delays:
            task = asyncio.create_task(self._retry(hook, delivery))
            self.retry_tasks.add(task)
            task.add_done_callback(self.retry_tasks.discard)

    async def _retry(self, hook: Webhook, delivery: Delivery) -> None:
        for delay in self.config.retry_delays:
            await asyncio.sleep(delay)
            if await self._attempt(hook, delivery):
                return

    async def _attempt(self, hook: Webhook, delivery: Delivery) -> bool:
        headers = {"Content-Type": "application/json", "User-Agent": "BTCPayServer",
                   "BTCPay-Sig": sign(hook.secret, delivery.body)}
        record: dict[str, Any] = {"at": time.time(), "status_code": None, "ok": False}
        try:
            async with httpx.AsyncClient(timeout=self.config.webhook_timeout,
                                         transport=self.transport) as client:
                resp = await client.post(hook.url, content=delivery.body, headers=headers)
            record.update(status_code=resp.status_code, ok=200 <= resp.status_code < 300)
        except httpx.HTTPError as exc:
            record["error"] = type(exc).__name__
        delivery.attempts.append(record)
        return bool(record["ok"])

    def redelivery(self, original: Delivery) -> Delivery:
        body = json.loads(original.body)
        new_id = _new_id()
        body.update(deliveryId=new_id, isRedelivery=True,
                    originalDeliveryId=body.get("originalDeliveryId") or original.id,
                    timestamp=int(time.time()))
        d = Delivery(id=new_id, webhook_id=original.webhook_id, type=original.type,
                     invoice_id=original.invoice_id, body=json.dumps(body).encode())
        self.deliveries[d.id] = d
        return d


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status)


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        raise ValidationErrors([{"path": "", "message": "Invalid JSON"}]) from None


def create_app(config: FakeConfig | None = None,
               transport: httpx.AsyncBaseTransport | None = None) -> FastAPI:
    fake = BTCPayFake(config or FakeConfig(), transport)
    app = FastAPI(title="BTCPay Server fake", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.fake = fake
    lock = asyncio.Lock()

    @app.exception_handler(GreenfieldError)
    async def greenfield_error(_: Request, exc: GreenfieldError):
        return _error(exc.status, exc.code, exc.message)

    @app.exception_handler(ValidationErrors)
    async def validation_error(_: Request, exc: ValidationErrors):
        return JSONResponse(exc.errors, status_code=422)

    async def deliver(inv: FakeInvoice, events: list[dict[str, Any]], notify: bool = True
                      ) -> list[dict[str, Any]]:
        deliveries = fake.build_deliveries(inv, events) if notify else []
        for d in deliveries:
            await fake.send(d)
        return [d.public() for d in deliveries]

    api = "/api/v1/stores/{store_id}"

    @app.post(api + "/invoices")
    async def create_invoice(store_id: str, request: Request):
        fake.check_auth(request, store_id)
        body = await _json_body(request)
        async with lock:
            inv = fake.create_invoice(store_id, body)
        await deliver(inv, [{"type": "InvoiceCreated"}])
        return fake.invoice_json(inv)

    @app.get(api + "/invoices")
    async def list_invoices(store_id: str, request: Request):
        fake.check_auth(request, store_id)
        return [fake.invoice_json(i) for i in fake.invoices.values() if i.store_id == store_id]

    async def read(store_id: str, invoice_id: str, request: Request) -> FakeInvoice:
        fake.check_auth(request, store_id)
        async with lock:
            inv = fake.get(invoice_id)
            if inv.store_id != store_id:
                raise GreenfieldError(404, "invoice-not-found", "The invoice was not found")
            events = fake.expire_if_due(inv)
        await deliver(inv, events)
        return inv

    @app.get(api + "/invoices/{invoice_id}")
    async def get_invoice(store_id: str, invoice_id: str, request: Request):
        return fake.invoice_json(await read(store_id, invoice_id, request))

    @app.get(api + "/invoices/{invoice_id}/payment-methods")
    async def payment_methods(store_id: str, invoice_id: str, request: Request):
        return fake.payment_methods_json(await read(store_id, invoice_id, request))

    @app.post(api + "/invoices/{invoice_id}/status")
    async def mark_status(store_id: str, invoice_id: str, request: Request):
        inv = await read(store_id, invoice_id, request)
        body = await _json_body(request)
        async with lock:
            events = fake.mark(inv, body.get("status") if isinstance(body, dict) else None)
        await deliver(inv, events)
        return fake.invoice_json(inv)

    @app.post(api + "/webhooks")
    async def create_webhook(store_id: str, request: Request):
        fake.check_auth(request, store_id)
        body = await _json_body(request)
        url = body.get("url") if isinstance(body, dict) else None
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValidationErrors([{"path": "url", "message": "Invalid url"}])
        secret = body.get("secret") or secrets.token_urlsafe(24)
        hook = Webhook(_new_id(), url, secret, bool(body.get("enabled", True)))
        fake.webhooks[hook.id] = hook
        return {**hook.public(), "secret": hook.secret}

    @app.get(api + "/webhooks")
    async def list_webhooks(store_id: str, request: Request):
        fake.check_auth(request, store_id)
        return [h.public() for h in fake.webhooks.values()]

    @app.get("/i/{invoice_id}", response_class=HTMLResponse)
    async def checkout_page(invoice_id: str):
        inv = fake.get(invoice_id)
        return (f"<html><body><h1>Invoice {inv.id}</h1><p>Pay {_fmt(inv.amount)} "
                f"{inv.currency} to {inv.destination}</p><p>Status: {inv.status}</p>"
                "</body></html>")

    # ----------------------------------------------------------------- control API

    @app.post("/_fake/invoices/{invoice_id}/payments")
    async def pay(invoice_id: str, request: Request):
        body = await _json_body(request)
        try:
            value = Decimal(str(body["amount"]))
            if value <= 0:
                raise InvalidOperation
        except (KeyError, InvalidOperation, TypeError, ValueError):
            raise ValidationErrors([{"path": "amount", "message": "amount > 0 required"}]
                                   ) from None
        async with lock:
            inv = fake.get(invoice_id)
            events = fake.add_payment(inv, value, settled=bool(body.get("settled", False)),
                                      txid=body.get("txid"))
        sent = await deliver(inv, events, bool(body.get("notify", True)))
        return {"invoice": fake.invoice_json(inv), "payment": inv.payments[-1].public(),
                "events": [e["type"] for e in events], "deliveries": sent}

    @app.post("/_fake/invoices/{invoice_id}/settle")
    async def settle(invoice_id: str, request: Request):
        body = await _json_body(request)
        async with lock:
            inv = fake.get(invoice_id)
            events = fake.settle_payments(inv)
        sent = await deliver(inv, events, bool(body.get("notify", True)))
        return {"invoice": fake.invoice_json(inv), "events": [e["type"] for e in events],
                "deliveries": sent}

    @app.post("/_fake/invoices/{invoice_id}/expire")
    async def expire(invoice_id: str, request: Request):
        body = await _json_body(request)
        async with lock:
            inv = fake.get(invoice_id)
            events = fake.expire(inv)
        sent = await deliver(inv, events, bool(body.get("notify", True)))
        return {"invoice": fake.invoice_json(inv), "events": [e["type"] for e in events],
                "deliveries": sent}

    @app.get("/_fake/deliveries")
    async def deliveries(invoice_id: str | None = None, type: str | None = None):
        out = [d.public() for d in fake.deliveries.values()
               if (invoice_id is None or d.invoice_id == invoice_id)
               and (type is None or d.type == type)]
        return {"deliveries": out}

    @app.post("/_fake/deliveries/{delivery_id}/redeliver")
    async def redeliver(delivery_id: str):
        original = fake.deliveries.get(delivery_id)
        if original is None:
            return _error(404, "delivery-not-found", "The delivery was not found")
        again = fake.redelivery(original)
        await fake.send(again, retry=False)
        return again.public()

    @app.post("/_fake/deliveries/{delivery_id}/resend")
    async def resend(delivery_id: str):
        """Send the very same delivery (same id and body) again, as an automatic retry does."""
        original = fake.deliveries.get(delivery_id)
        if original is None:
            return _error(404, "delivery-not-found", "The delivery was not found")
        await fake.send(original, retry=False)
        return original.public()

    @app.post("/_fake/webhooks")
    async def set_webhook(request: Request):
        body = await _json_body(request)
        url = body.get("url") if isinstance(body, dict) else None
        if not isinstance(url, str):
            raise ValidationErrors([{"path": "url", "message": "url required"}])
        hook = Webhook(_new_id(), url, body.get("secret") or fake.config.webhook_secret)
        fake.webhooks[hook.id] = hook
        return hook.public()

    @app.post("/_fake/reset")
    async def reset():
        for task in list(fake.retry_tasks):
            task.cancel()
        fake.reset()
        return {"ok": True}

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fakes.btcpay")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=23000)
    parser.add_argument("--webhook-url", default=None)
    ns = parser.parse_args(argv)
    env_config = FakeConfig.from_env()
    config = FakeConfig(**{**env_config.__dict__,
                           "public_url": f"http://{ns.host}:{ns.port}",
                           "webhook_url": ns.webhook_url or env_config.webhook_url})
    logging.basicConfig(level=logging.INFO)
    uvicorn.run(create_app(config), host=ns.host, port=ns.port, log_level="warning")


if __name__ == "__main__":
    main()
