"""Crypto Pay (@CryptoBot) fake: a real HTTP server speaking the Crypto Pay API subset billing
uses, written from the documented behaviour.

Owns the fake side of the Crypto Pay integration and nothing else:

* API: ``/api/<method>``, GET or POST, parameters in the query string, a JSON body, a
  form-urlencoded or a multipart body; header ``Crypto-Pay-API-Token`` (missing or wrong: HTTP
  401 ``{"ok": false, "error": {"code": 401, "name": "UNAUTHORIZED"}}``, as the real API answers
  an unknown app). Methods ``getMe``, ``createInvoice``, ``getInvoices`` (result ``{"items":
  [...]}``, not the bare array the docs describe; ``count`` defaults to 100 even when
  ``invoice_ids`` are named), ``deleteInvoice``, ``getExchangeRates``; an unknown method is 405
  ``METHOD_NOT_FOUND``. Envelope ``{"ok": true, "result": ...}`` or ``{"ok": false, "error":
  {"code", "name"}}`` with the code as HTTP status. Seen error names: ``INVOICE_NOT_FOUND``,
  ``METHOD_NOT_FOUND``, ``EXPIRES_IN_INVALID``; the others follow their pattern
  (``PARAM_<NAME>_REQUIRED``, ``<NAME>_INVALID``).
* invoices: ids are integers, amounts strings, times ISO-8601; ``status`` ``active`` →
  ``paid`` (in full, in one of ``accepted_assets``: ``paid_asset``, ``paid_amount``,
  ``paid_fiat_rate``, ``paid_usd_rate``, a 3 % fee) or → ``expired`` once ``expires_in`` has
  passed (seen when next read). URLs: ``bot_invoice_url`` (and the deprecated ``pay_url``,
  ``mini_app_invoice_url``, ``web_app_invoice_url``) open this fake's own pay page.
* webhooks (when a webhook URL is set, as in the app's settings): ``{"update_id",
  "update_type": "invoice_paid", "request_date", "payload": <Invoice>}`` as compact JSON, signed
  ``crypto-pay-api-signature: hex(HMAC-SHA256(key=SHA-256(token), raw body))``; a failed
  delivery is retried with the same body (17 attempts over about 3 days: the real spacing is not
  documented). ``update_id`` is not unique on the real service: a redelivery may repeat it.
* a control API under ``/_fake`` (no auth) for tests and local drills: pay an invoice (coin and
  amount chosen; the webhook sent or lost), expire it, send its webhook, redeliver a delivery
  (a new or the same ``update_id``), set the exchange rates, make calls fail or hang, list
  invoices and deliveries, set the webhook URL, reset.

Run it: ``python -m fakes.cryptopay --host 127.0.0.1 --port 23100 --webhook-url URL --token T``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import html
import json
import logging
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_UP, Decimal, InvalidOperation
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

__all__ = ["CryptoPayFake", "FakeConfig", "create_app", "main", "sign"]

log = logging.getLogger("fakes.cryptopay")

DEFAULT_TOKEN = "12345:test-cryptopay-token"
ASSETS = ("USDT", "TON", "BTC", "ETH", "LTC", "BNB", "TRX", "USDC")
FIATS = ("USD", "EUR", "RUB", "BYN", "UAH", "GBP", "CNY", "KZT", "UZS", "GEL", "TRY", "AMD",
         "THB", "INR", "BRL", "IDR", "AZN", "AED", "PLN", "ILS")
# USD per unit; the fiat targets besides USD are derived with these USD prices of a unit.
DEFAULT_USD_RATES = {"USDT": "1", "USDC": "1", "TON": "5", "BTC": "60000", "ETH": "3000",
                     "LTC": "80", "BNB": "600", "TRX": "0.25"}
FIAT_PER_USD = {"USD": Decimal(1), "EUR": Decimal("0.92"), "RUB": Decimal("90")}
MAX_EXPIRES_IN = 2_678_400
FEE = Decimal("0.03")
# 17 attempts in all (the first and these retries), spread over about three days.
REAL_RETRY_DELAYS = (5.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 10800.0, 14400.0,
                     21600.0, 28800.0, 36000.0, 43200.0, 43200.0, 43200.0)
QUANTUM = Decimal("0.00000001")


def sign(token: str, body: bytes) -> str:
    key = hashlib.sha256(token.encode()).digest()
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def _fmt(value: Decimal) -> str:
    return format(value.normalize(), "f") if value else "0"


@dataclass(frozen=True)
class FakeConfig:
    token: str = DEFAULT_TOKEN
    public_url: str = "http://127.0.0.1:23100"
    webhook_url: str | None = None
    retry_delays: tuple[float, ...] = REAL_RETRY_DELAYS
    webhook_timeout: float = 10.0
    app_name: str = "Fake shop"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> FakeConfig:
        env = os.environ if env is None else env
        return cls(token=env.get("CRYPTOPAY_TOKEN") or DEFAULT_TOKEN,
                   webhook_url=env.get("FAKE_CRYPTOPAY_WEBHOOK_URL") or None)


class ApiError(Exception):
    def __init__(self, code: int, name: str):
        super().__init__(name)
        self.code, self.name = code, name


class ControlError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class FakeInvoice:
    invoice_id: int
    hash: str
    currency_type: str
    asset: str | None
    fiat: str | None
    amount: Decimal
    accepted_assets: list[str] | None
    created_at: float
    expires_at: float | None
    params: dict[str, Any]  # what createInvoice was given, for tests
    status: str = "active"
    paid_at: float | None = None
    paid_asset: str | None = None
    paid_amount: Decimal | None = None
    paid_fiat_rate: Decimal | None = None
    paid_usd_rate: Decimal | None = None
    fee_amount: Decimal | None = None
    paid_anonymously: bool = False
    comment: str | None = None
    deleted: bool = False


@dataclass
class Delivery:
    id: str
    update_id: int
    invoice_id: int
    body: bytes
    attempts: list[dict[str, Any]] = field(default_factory=list)

    def public(self) -> dict[str, Any]:
        last = self.attempts[-1] if self.attempts else {}
        return {"id": self.id, "update_id": self.update_id, "invoice_id": self.invoice_id,
                "body": json.loads(self.body), "attempts": self.attempts,
                "status_code": last.get("status_code"), "ok": bool(last.get("ok"))}


@dataclass
class Fault:
    method: str  # a method name, or "*"
    status: int | None  # answer with this error; None: only the delay, then the real answer
    name: str
    delay: float
    times: int | None  # None: until removed
    raw: str | None  # a non-JSON body (a proxy's error page) instead of the envelope
    after: bool = False  # the call does its work first (an invoice is created), then fails


class CryptoPayFake:
    """The fake's world: invoices, exchange rates, webhook deliveries, injected faults."""

    def __init__(self, config: FakeConfig, transport: httpx.AsyncBaseTransport | None = None):
        self.config = config
        self.transport = transport
        self.reset()

    def reset(self) -> None:
        self.invoices: dict[int, FakeInvoice] = {}
        self.deliveries: dict[str, Delivery] = {}
        self.faults: list[Fault] = []
        self.calls: list[dict[str, Any]] = []
        self.webhook_url = self.config.webhook_url
        self.usd_rates = {k: Decimal(v) for k, v in DEFAULT_USD_RATES.items()}
        self.invalid_rates: set[str] = set()
        self.retry_tasks: set[asyncio.Task] = set()
        self._next_invoice = 1000
        self._next_update = 1

    # ----------------------------------------------------------------- rates

    def rates_json(self) -> list[dict[str, Any]]:
        out = []
        for asset, usd in self.usd_rates.items():
            for fiat, per_usd in FIAT_PER_USD.items():
                out.append({"is_valid": asset not in self.invalid_rates, "is_crypto": True,
                            "is_fiat": False, "source": asset, "target": fiat,
                            "rate": _fmt((usd * per_usd).quantize(QUANTUM))})
        return out

    def fiat_rate(self, asset: str, fiat: str) -> Decimal:
        """The fiat price of one unit of `asset`."""
        usd = self.usd_rates.get(asset)
        per_usd = FIAT_PER_USD.get(fiat)
        if usd is None or per_usd is None or asset in self.invalid_rates:
            raise ControlError(409, f"no valid {asset}/{fiat} rate to pay with")
        return usd * per_usd

    # ----------------------------------------------------------------- invoices

    def invoice_json(self, inv: FakeInvoice) -> dict[str, Any]:
        base = self.config.public_url.rstrip("/")
        out: dict[str, Any] = {
            "invoice_id": inv.invoice_id, "hash": inv.hash, "currency_type": inv.currency_type,
            "amount": _fmt(inv.amount), "status": inv.status, "created_at": _iso(inv.created_at),
            "allow_comments": inv.params.get("allow_comments", True),
            "allow_anonymous": inv.params.get("allow_anonymous", True),
            "bot_invoice_url": f"{base}/bot?start={inv.hash}",
            "pay_url": f"{base}/bot?start={inv.hash}",
            "mini_app_invoice_url": f"{base}/app?startapp=invoice-{inv.hash}",
            "web_app_invoice_url": f"{base}/invoices/{inv.hash}",
        }
        if inv.currency_type == "crypto":
            out["asset"] = inv.asset
        else:
            out["fiat"] = inv.fiat
            if inv.accepted_assets:
                out["accepted_assets"] = inv.accepted_assets
        for name in ("description", "hidden_message", "payload", "paid_btn_name",
                     "paid_btn_url"):
            if inv.params.get(name) is not None:
                out[name] = inv.params[name]
        if inv.expires_at is not None:
            out["expiration_date"] = _iso(inv.expires_at)
        if inv.status == "paid":
            paid_asset = inv.paid_asset or ""
            out.update(paid_at=_iso(inv.paid_at or time.time()),
                       paid_anonymously=inv.paid_anonymously,
                       paid_usd_rate=_fmt(inv.paid_usd_rate or Decimal(0)),
                       fee_asset=paid_asset, fee_amount=_fmt(inv.fee_amount or Decimal(0)),
                       fee_in_usd=_fmt(((inv.fee_amount or 0) * (inv.paid_usd_rate or 0))
                                       .quantize(Decimal("0.01"))))
            if inv.currency_type == "fiat":
                out.update(paid_asset=paid_asset, paid_amount=_fmt(inv.paid_amount or 0),
                           paid_fiat_rate=_fmt(inv.paid_fiat_rate or Decimal(0)))
            if inv.comment:
                out["comment"] = inv.comment
        return out

    def control_json(self, inv: FakeInvoice) -> dict[str, Any]:
        return {**self.invoice_json(inv), "deleted": inv.deleted, "request": inv.params}

    def expire_if_due(self, inv: FakeInvoice) -> None:
        if inv.status == "active" and inv.expires_at is not None and time.time() >= inv.expires_at:
            inv.status = "expired"

    def get(self, invoice_id: Any) -> FakeInvoice:
        try:
            inv = self.invoices.get(int(invoice_id))
        except (TypeError, ValueError):
            inv = None
        if inv is None or inv.deleted:
            raise ApiError(400, "INVOICE_NOT_FOUND")
        self.expire_if_due(inv)
        return inv

    def by_hash(self, value: str) -> FakeInvoice:
        for inv in self.invoices.values():
            if inv.hash == value and not inv.deleted:
                self.expire_if_due(inv)
                return inv
        raise ControlError(404, "invoice not found")

    def create_invoice(self, p: dict[str, Any]) -> FakeInvoice:
        currency_type = p.get("currency_type") or "crypto"
        if currency_type not in ("crypto", "fiat"):
            raise ApiError(400, "CURRENCY_TYPE_INVALID")
        asset = fiat = None
        accepted: list[str] | None = None
        if currency_type == "crypto":
            asset = _required(p, "asset").upper()
            if asset not in ASSETS:
                raise ApiError(400, "ASSET_INVALID")
        else:
            fiat = _required(p, "fiat").upper()
            if fiat not in FIATS:
                raise ApiError(400, "FIAT_INVALID")
            raw = p.get("accepted_assets")
            if raw:
                items = raw if isinstance(raw, list) else str(raw).split(",")
                accepted = [str(a).strip().upper() for a in items if str(a).strip()]
                if not accepted or any(a not in ASSETS for a in accepted):
                    raise ApiError(400, "ACCEPTED_ASSETS_INVALID")
        try:
            amount = Decimal(str(_required(p, "amount")))
        except InvalidOperation:
            raise ApiError(400, "AMOUNT_INVALID") from None
        if not amount.is_finite() or amount <= 0:
            raise ApiError(400, "AMOUNT_INVALID")
        for name, limit in (("description", 1024), ("hidden_message", 2048)):
            if p.get(name) is not None and len(str(p[name])) > limit:
                raise ApiError(400, f"{name.upper()}_TOO_LONG")
        if p.get("payload") is not None and len(str(p["payload"]).encode()) > 4096:
            raise ApiError(400, "PAYLOAD_TOO_LONG")
        if p.get("paid_btn_name") is not None:
            if p["paid_btn_name"] not in ("viewItem", "openChannel", "openBot", "callback"):
                raise ApiError(400, "PAID_BTN_NAME_INVALID")
            if not str(p.get("paid_btn_url") or "").startswith(("http://", "https://")):
                raise ApiError(400, "PAID_BTN_URL_INVALID")
        expires_at = None
        if p.get("expires_in") is not None:
            try:
                seconds = int(str(p["expires_in"]))
            except ValueError:
                raise ApiError(400, "EXPIRES_IN_INVALID") from None
            if not 1 <= seconds <= MAX_EXPIRES_IN:
                raise ApiError(400, "EXPIRES_IN_INVALID")
            expires_at = time.time() + seconds
        self._next_invoice += 1
        params = {k: v for k, v in p.items()}
        for flag in ("allow_comments", "allow_anonymous"):
            if flag in params:
                params[flag] = _bool(params[flag])
        inv = FakeInvoice(
            invoice_id=self._next_invoice, hash="IV" + secrets.token_hex(6).upper(),
            currency_type=currency_type, asset=asset, fiat=fiat, amount=amount,
            accepted_assets=accepted, created_at=time.time(), expires_at=expires_at,
            params=params)
        self.invoices[inv.invoice_id] = inv
        return inv

    def list_invoices(self, p: dict[str, Any]) -> dict[str, Any]:
        try:
            offset = int(str(p.get("offset", 0)))
        except ValueError:
            raise ApiError(400, "OFFSET_INVALID") from None
        try:
            count = int(str(p.get("count", 100)))
        except ValueError:
            raise ApiError(400, "COUNT_INVALID") from None
        if offset < 0:
            raise ApiError(400, "OFFSET_INVALID")
        if not 1 <= count <= 1000:
            raise ApiError(400, "COUNT_INVALID")
        ids: set[int] | None = None
        raw = p.get("invoice_ids")
        if raw not in (None, ""):
            items = raw if isinstance(raw, list) else str(raw).split(",")
            try:
                ids = {int(str(i).strip()) for i in items if str(i).strip()}
            except ValueError:
                raise ApiError(400, "INVOICE_IDS_INVALID") from None
        status = p.get("status")
        if status not in (None, "", "active", "paid", "expired"):
            raise ApiError(400, "STATUS_INVALID")
        found = []
        for inv in sorted(self.invoices.values(), key=lambda i: -i.invoice_id):  # newest first
            if inv.deleted or (ids is not None and inv.invoice_id not in ids):
                continue
            self.expire_if_due(inv)
            if status and inv.status != status:
                continue
            if p.get("asset") and inv.asset != str(p["asset"]).upper():
                continue
            if p.get("fiat") and inv.fiat != str(p["fiat"]).upper():
                continue
            found.append(self.invoice_json(inv))
        return {"items": found[offset:offset + count]}

    def pay(self, inv: FakeInvoice, body: dict[str, Any]) -> None:
        """The customer pays the invoice in full inside Crypto Bot."""
        self.expire_if_due(inv)
        if inv.status != "active" and not (inv.status == "expired" and _bool(body.get("force"))):
            raise ControlError(409, f"a {inv.status} invoice cannot be paid")
        if inv.currency_type == "crypto":
            asset, fiat_rate = inv.asset or "", None
            paid = inv.amount
        else:
            choices = inv.accepted_assets or list(ASSETS)
            asset = str(body.get("paid_asset") or choices[0]).upper()
            if asset not in choices:
                raise ControlError(409, f"{asset} is not accepted by this invoice")
            fiat_rate = self.fiat_rate(asset, inv.fiat or "USD")
            paid = (inv.amount / fiat_rate).quantize(QUANTUM, rounding=ROUND_UP)
        if body.get("paid_amount") is not None:
            try:
                paid = Decimal(str(body["paid_amount"]))
            except InvalidOperation:
                raise ControlError(400, "paid_amount must be a number") from None
        inv.status, inv.paid_at = "paid", time.time()
        inv.paid_asset, inv.paid_amount, inv.paid_fiat_rate = asset, paid, fiat_rate
        inv.paid_usd_rate = self.usd_rates.get(asset, Decimal(0))
        inv.fee_amount = (paid * FEE).quantize(QUANTUM)
        inv.paid_anonymously = _bool(body.get("anonymous", False))
        inv.comment = body.get("comment") or None

    # ----------------------------------------------------------------- webhooks

    def paid_update(self, inv: FakeInvoice) -> Delivery:
        update_id = self._next_update
        self._next_update += 1
        return self._delivery(update_id, inv.invoice_id, {
            "update_id": update_id, "update_type": "invoice_paid",
            "request_date": _iso(time.time()), "payload": self.invoice_json(inv)})

    def _delivery(self, update_id: int, invoice_id: int, body: dict[str, Any]) -> Delivery:
        raw = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        d = Delivery(id=f"d{len(self.deliveries) + 1}", update_id=update_id,
                     invoice_id=invoice_id, body=raw)
        self.deliveries[d.id] = d
        return d

    def redelivery(self, original: Delivery, same_update_id: bool) -> Delivery:
        body = json.loads(original.body)
        if same_update_id:
            update_id = original.update_id
        else:
            update_id = self._next_update
            self._next_update += 1
        body.update(update_id=update_id, request_date=_iso(time.time()))
        return self._delivery(update_id, original.invoice_id, body)

    async def send(self, delivery: Delivery, *, retry: bool = True) -> None:
        """One attempt now; on failure, retries with the same body in the background."""
        if not self.webhook_url:
            return
        ok = await self._attempt(self.webhook_url, delivery)
        if not ok and retry and self.config.retry_delays:
            task = asyncio.create_task(self._retry(self.webhook_url, delivery))
            self.retry_tasks.add(task)
            task.add_done_callback(self.retry_tasks.discard)

    async def _retry(self, url: str, delivery: Delivery) -> None:
        for delay in self.config.retry_delays:
            await asyncio.sleep(delay)
            if await self._attempt(url, delivery):
                return

    async def _attempt(self, url: str, delivery: Delivery) -> bool:
        headers = {"Content-Type": "application/json",
                   "crypto-pay-api-signature": sign(self.config.token, delivery.body)}
        record: dict[str, Any] = {"at": time.time(), "status_code": None, "ok": False}
        try:
            async with httpx.AsyncClient(timeout=self.config.webhook_timeout,
                                         transport=self.transport) as client:
                resp = await client.post(url, content=delivery.body, headers=headers)
            record.update(status_code=resp.status_code, ok=200 <= resp.status_code < 300)
        except httpx.HTTPError as exc:
            record["error"] = type(exc).__name__
        delivery.attempts.append(record)
        return bool(record["ok"])

    # ----------------------------------------------------------------- faults

    def fault_for(self, method: str) -> Fault | None:
        for fault in self.faults:
            if fault.method in ("*", method):
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                return fault
        return None


def _required(p: dict[str, Any], name: str) -> str:
    value = p.get(name)
    if value is None or value == "":
        raise ApiError(400, f"PARAM_{name.upper()}_REQUIRED")
    return str(value)


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _envelope_error(code: int, name: str) -> JSONResponse:
    return JSONResponse({"ok": False, "error": {"code": code, "name": name}}, status_code=code)


async def _params(request: Request) -> dict[str, Any]:
    """Query string, then the body: JSON, form-urlencoded or multipart, as the real API takes."""
    params: dict[str, Any] = dict(request.query_params)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if request.method != "POST":
        return params
    if ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.form()
        params.update({k: v for k, v in form.items() if isinstance(v, str)})
        return params
    raw = await request.body()
    if raw.strip():
        try:
            body = json.loads(raw)
        except ValueError:
            raise ApiError(400, "JSON_INVALID") from None
        if not isinstance(body, dict):
            raise ApiError(400, "JSON_INVALID")
        params.update(body)
    return params


async def _control_body(request: Request) -> dict[str, Any]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise ControlError(400, "invalid JSON") from None
    if not isinstance(body, dict):
        raise ControlError(400, "the body must be a JSON object")
    return body


def create_app(config: FakeConfig | None = None,
               transport: httpx.AsyncBaseTransport | None = None) -> FastAPI:
    fake = CryptoPayFake(config or FakeConfig(), transport)
    app = FastAPI(title="Crypto Pay fake", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.fake = fake
    lock = asyncio.Lock()

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError):
        return _envelope_error(exc.code, exc.name)

    @app.exception_handler(ControlError)
    async def control_error(_: Request, exc: ControlError):
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    def ok(result: Any) -> JSONResponse:
        return JSONResponse({"ok": True, "result": result})

    async def get_me(_: dict[str, Any]) -> Any:
        return {"app_id": 1, "name": fake.config.app_name,
                "payment_processing_bot_username": "CryptoBot"}

    async def create_invoice(p: dict[str, Any]) -> Any:
        async with lock:
            return fake.invoice_json(fake.create_invoice(p))

    async def get_invoices(p: dict[str, Any]) -> Any:
        async with lock:
            return fake.list_invoices(p)

    async def delete_invoice(p: dict[str, Any]) -> Any:
        async with lock:
            fake.get(_required(p, "invoice_id")).deleted = True
        return True

    async def get_exchange_rates(_: dict[str, Any]) -> Any:
        return fake.rates_json()

    methods = {"getMe": get_me, "createInvoice": create_invoice, "getInvoices": get_invoices,
               "deleteInvoice": delete_invoice, "getExchangeRates": get_exchange_rates}

    @app.api_route("/api/{method}", methods=["GET", "POST"])
    async def api(method: str, request: Request):
        token = request.headers.get("crypto-pay-api-token", "")
        if not hmac.compare_digest(token.encode(), fake.config.token.encode()):
            raise ApiError(401, "UNAUTHORIZED")
        handler = methods.get(method)
        if handler is None:
            raise ApiError(405, "METHOD_NOT_FOUND")
        params = await _params(request)
        fake.calls.append({"method": method, "params": params, "at": time.time()})
        fault = fake.fault_for(method)
        if fault is None:
            return ok(await handler(params))
        result = await handler(params) if fault.after else None
        if fault.delay:
            await asyncio.sleep(fault.delay)
        if fault.raw is not None:
            return Response(fault.raw, status_code=fault.status or 502, media_type="text/html")
        if fault.status is not None:
            return _envelope_error(fault.status, fault.name)
        return ok(result if fault.after else await handler(params))

    # ----------------------------------------------------------------- the customer's page

    @app.get("/bot", response_class=HTMLResponse)
    @app.get("/app", response_class=HTMLResponse)
    async def pay_page(start: str | None = None, startapp: str | None = None):
        inv = fake.by_hash(start or (startapp or "").removeprefix("invoice-"))
        return _page(fake, inv)

    @app.get("/invoices/{hash_}", response_class=HTMLResponse)
    async def web_pay_page(hash_: str):
        return _page(fake, fake.by_hash(hash_))

    # ----------------------------------------------------------------- control API

    async def send_paid(inv: FakeInvoice, notify: bool) -> list[dict[str, Any]]:
        if not notify or not fake.webhook_url:  # lost, or no webhook set in the app
            return []
        d = fake.paid_update(inv)
        await fake.send(d)
        return [d.public()]

    @app.get("/_fake/invoices")
    async def control_list():
        return {"invoices": [fake.control_json(i) for i in fake.invoices.values()]}

    @app.get("/_fake/invoices/{invoice_id}")
    async def control_get(invoice_id: int):
        async with lock:
            inv = fake.invoices.get(invoice_id)
            if inv is None:
                raise ControlError(404, "invoice not found")
            fake.expire_if_due(inv)
            return fake.control_json(inv)

    def control_invoice(invoice_id: int) -> FakeInvoice:
        inv = fake.invoices.get(invoice_id)
        if inv is None or inv.deleted:
            raise ControlError(404, "invoice not found")
        return inv

    @app.post("/_fake/invoices/{invoice_id}/pay")
    async def control_pay(invoice_id: int, request: Request):
        """Body: `paid_asset`, `paid_amount` (what the customer sent in it; default: the
        amount at the rate), `comment`, `anonymous`, `notify` (false: the webhook is lost),
        `force` (pay an expired one: a payment racing the expiry), `back` (a page to return to)."""
        body = await _control_body(request)
        async with lock:
            inv = control_invoice(invoice_id)
            fake.pay(inv, body)
        sent = await send_paid(inv, _bool(body.get("notify", True)))
        if body.get("back"):
            return RedirectResponse(str(body["back"]), status_code=303)
        return {"invoice": fake.invoice_json(inv), "deliveries": sent}

    @app.post("/_fake/invoices/{invoice_id}/expire")
    async def control_expire(invoice_id: int):
        async with lock:
            inv = control_invoice(invoice_id)
            fake.expire_if_due(inv)
            if inv.status != "active":
                raise ControlError(409, f"a {inv.status} invoice cannot expire")
            inv.status = "expired"
        return {"invoice": fake.invoice_json(inv)}

    @app.post("/_fake/invoices/{invoice_id}/webhook")
    async def control_webhook(invoice_id: int):
        """Send the paid invoice's `invoice_paid` update now (a new update_id)."""
        async with lock:
            inv = control_invoice(invoice_id)
            if inv.status != "paid":
                raise ControlError(409, "only a paid invoice has a webhook")
        return {"deliveries": await send_paid(inv, True)}

    @app.get("/_fake/deliveries")
    async def control_deliveries(invoice_id: int | None = None):
        return {"deliveries": [d.public() for d in fake.deliveries.values()
                               if invoice_id is None or d.invoice_id == invoice_id]}

    @app.post("/_fake/deliveries/{delivery_id}/redeliver")
    async def control_redeliver(delivery_id: str, request: Request):
        """The same payload again: `{"update_id": "new"}` (default) or `"same"`."""
        body = await _control_body(request)
        original = fake.deliveries.get(delivery_id)
        if original is None:
            raise ControlError(404, "delivery not found")
        again = fake.redelivery(original, body.get("update_id", "new") == "same")
        await fake.send(again, retry=False)
        return again.public()

    @app.post("/_fake/deliveries/{delivery_id}/resend")
    async def control_resend(delivery_id: str):
        """The very same body once more, as an automatic retry sends it."""
        original = fake.deliveries.get(delivery_id)
        if original is None:
            raise ControlError(404, "delivery not found")
        await fake.send(original, retry=False)
        return original.public()

    @app.post("/_fake/webhook")
    async def control_set_webhook(request: Request):
        """`{"url": ...}` (null: webhooks off), as in the app's settings in @CryptoBot."""
        body = await _control_body(request)
        url = body.get("url")
        if url is not None and not str(url).startswith(("http://", "https://")):
            raise ControlError(400, "url must be http(s)")
        fake.webhook_url = url
        return {"url": url}

    @app.get("/_fake/rates")
    async def control_rates():
        return {"rates": fake.rates_json()}

    @app.post("/_fake/rates")
    async def control_set_rates(request: Request):
        """`{"usd": {"BTC": "50000", "ETH": null}, "invalid": ["TON"], "replace": false}`:
        USD per unit (null removes the asset), which rates say `is_valid: false`."""
        body = await _control_body(request)
        usd = body.get("usd") or {}
        if not isinstance(usd, dict):
            raise ControlError(400, "usd must be an object")
        async with lock:
            if _bool(body.get("replace", False)):
                fake.usd_rates = {}
            for asset, value in usd.items():
                if value is None:
                    fake.usd_rates.pop(asset.upper(), None)
                    continue
                try:
                    fake.usd_rates[asset.upper()] = Decimal(str(value))
                except InvalidOperation:
                    raise ControlError(400, f"{asset}: not a number") from None
            if "invalid" in body:
                fake.invalid_rates = {str(a).upper() for a in body.get("invalid") or []}
        return {"rates": fake.rates_json()}

    @app.post("/_fake/faults")
    async def control_fault(request: Request):
        """`{"method": "createInvoice" | "*", "status": 500, "name": "INTERNAL_ERROR",
        "delay_ms": 0, "times": null, "raw": null, "after": false}`: the next calls (all, or
        `times`) wait `delay_ms` (a hang, for timeouts), then answer that error (or a raw
        non-JSON page); without `status` and `raw` they answer normally after the wait. With
        `after` the call has done its work first (the invoice exists at Crypto Pay)."""
        body = await _control_body(request)
        try:
            status = int(body["status"]) if body.get("status") is not None else None
            delay = float(body.get("delay_ms") or 0) / 1000
            times = int(body["times"]) if body.get("times") is not None else None
        except (TypeError, ValueError):
            raise ControlError(400, "status, delay_ms and times are numbers") from None
        fault = Fault(method=str(body.get("method") or "*"), status=status,
                      name=str(body.get("name") or "INTERNAL_ERROR"), delay=delay, times=times,
                      raw=body.get("raw"), after=_bool(body.get("after", False)))
        fake.faults.append(fault)
        return {"faults": len(fake.faults)}

    @app.delete("/_fake/faults")
    async def control_clear_faults():
        fake.faults.clear()
        return {"faults": 0}

    @app.get("/_fake/calls")
    async def control_calls(method: str | None = None):
        return {"calls": [c for c in fake.calls if method is None or c["method"] == method]}

    @app.post("/_fake/reset")
    async def control_reset():
        for task in list(fake.retry_tasks):
            task.cancel()
        fake.reset()
        return {"ok": True}

    return app


def _page(fake: CryptoPayFake, inv: FakeInvoice) -> str:
    """Crypto Bot's invoice as the customer sees it, with a button per accepted coin."""
    e = html.escape
    due = f"{_fmt(inv.amount)} {inv.fiat or inv.asset}"
    rows = [f"<h1>Crypto Bot (fake)</h1><p>{e(str(inv.params.get('description') or ''))}</p>",
            f"<p>Invoice #{inv.invoice_id}: <b>{e(due)}</b> · status <b>{e(inv.status)}</b></p>"]
    if inv.status == "active":
        back = f"/bot?start={inv.hash}"
        for asset in (inv.accepted_assets or [inv.asset or "USDT"]):
            rows.append(f'<form method="post" action="/_fake/invoices/{inv.invoice_id}/pay">'
                        f'<input type="hidden" name="paid_asset" value="{e(asset)}">'
                        f'<input type="hidden" name="back" value="{e(back)}">'
                        f'<button type="submit">Pay with {e(asset)}</button></form>')
    return "<html><body>" + "".join(rows) + "</body></html>"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fakes.cryptopay")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=23100)
    parser.add_argument("--webhook-url", default=None,
                        help="where invoice_paid updates are posted (none: webhooks off)")
    parser.add_argument("--token", default=None, help="the app's API token (CRYPTOPAY_TOKEN)")
    parser.add_argument("--public-url", default=None,
                        help="the base of the invoice links (default http://HOST:PORT)")
    ns = parser.parse_args(argv)
    env_config = FakeConfig.from_env()
    config = FakeConfig(**{**env_config.__dict__,
                           "public_url": ns.public_url or f"http://{ns.host}:{ns.port}",
                           "token": ns.token or env_config.token,
                           "webhook_url": ns.webhook_url or env_config.webhook_url})
    logging.basicConfig(level=logging.INFO)
    uvicorn.run(create_app(config), host=ns.host, port=ns.port, log_level="warning")


if __name__ == "__main__":
    main()
