"""NOWPayments fake: a real HTTP server speaking the payment API subset billing uses.

Owns the fake side of the NOWPayments integration and nothing else:

* API under ``/v1`` (auth ``x-api-key``; a missing or wrong key is 403 ``{"status": false,
  "statusCode": 403, "code": "INVALID_API_KEY", "message": "Invalid api key"}``, the envelope of
  every error): ``POST /v1/payment`` (201; priced at the fake's own rate table: ``pay_amount``,
  a fresh ``pay_address``, ``payin_extra_id`` for memo coins), ``GET /v1/payment/{id}`` (only
  with the key that created it), ``GET /v1/payment/`` (``limit`` 1-500, 0-based ``page``,
  ``sortBy``, ``orderBy``, ``dateFrom``, ``dateTo``: ``{data, limit, page, pagesCount, total}``),
  ``GET /v1/status`` (no auth, ``{"message": "OK"}``), ``GET /v1/currencies``. Amounts are JSON
  numbers, ``payment_id`` a number (a string in the create answer), as the real API writes
  them.
* IPNs: one per status step, POSTed to the payment's ``ipn_callback_url`` (or to the
  ``--webhook-url`` when one is given), the body shaped like ``GET /v1/payment/{id}`` (from
  ``confirmed`` on with a nested ``fee`` object), written as JavaScript's ``JSON.stringify``
  writes it (non-ASCII as is) and signed ``x-nowpayments-sig: hex(HMAC-SHA512(IPN secret,
  JSON.stringify(sortObject(body))))`` with the keys sorted recursively. No IPN secret: no
  IPNs, as on the real service; none after a payment expired. A failed delivery is retried
  (recurrent notifications, same body) on ``retry_delays``.
* a control API under ``/_fake`` (no auth) for tests: pay a payment (full, partial, over; step
  by step or to the end; with its IPNs sent or lost), set any status, expire, list deliveries,
  send a lost one or the same one again, redeliver (a recurrent notification of the same step),
  set rates, make calls fail or hang, reset.

A ``waiting`` payment whose ``valid_until`` passed becomes ``expired`` when next read.

Run it: ``python -m fakes.nowpayments --host 127.0.0.1 --port 23200 --webhook-url URL
--api-key KEY --ipn-secret SECRET``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import logging
import math
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
from fastapi.responses import HTMLResponse, Response

__all__ = ["FakeConfig", "NowPaymentsFake", "create_app", "js_json", "main", "sign"]

log = logging.getLogger("fakes.nowpayments")

DEFAULT_API_KEY = "test-nowpayments-api-key"
DEFAULT_IPN_SECRET = "dev-nowpayments-ipn-secret"
# Recurrent notifications after a failed IPN (the documented example: 3, a minute apart).
REAL_RETRY_DELAYS = (60.0, 60.0, 60.0)
# The API text: a payment nobody paid expires after 24 hours (the help centre says 7 days).
PAYMENT_LIFETIME_SECONDS = 24 * 3600
DEFAULT_RATES = {  # USD per unit
    "btc": "60000", "eth": "3000", "ltc": "70", "trx": "0.12", "xrp": "0.5", "xlm": "0.1",
    "ton": "5", "usdttrc20": "1", "usdterc20": "1", "usdtbsc": "1",
}
FIAT = {"usd": Decimal(1), "eur": Decimal("1.08")}
MEMO_CURRENCIES = frozenset({"xrp", "xlm", "ton"})
STATUSES = ("waiting", "confirming", "confirmed", "sending", "partially_paid", "finished",
            "failed", "refunded", "expired")
STEPS = ("confirming", "confirmed", "sending")
WITH_FEE = frozenset({"confirmed", "sending", "partially_paid", "finished", "refunded"})
SORTABLE = ("created_at", "payment_id", "payment_status", "pay_address", "price_amount",
            "price_currency", "pay_amount", "actually_paid", "pay_currency", "order_id",
            "order_description", "purchase_id", "outcome_amount", "outcome_currency")
SERVICE_FEE = Decimal("0.005")
Q8 = Decimal("0.00000001")
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
RATE_LIMITED_PAGE = ("<html><head><title>429 Too Many Requests</title></head><body><center>"
                     "<h1>429 Too Many Requests</h1></center><hr><center>nginx</center>"
                     "</body></html>")


# ------------------------------------------------------------------ JSON as JavaScript writes it

def _js_number(value: int | float | Decimal) -> str:
    """A number as `JSON.stringify` prints the double it is (ECMAScript Number::toString)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**53:
        return str(value)
    x = float(value)
    if not math.isfinite(x):
        return "null"
    if x == 0:
        return "0"
    _, digits_tuple, exponent = Decimal(repr(abs(x))).as_tuple()
    raw = "".join(map(str, digits_tuple))
    digits = raw.rstrip("0") or "0"
    exponent += len(raw) - len(digits)
    k, n = len(digits), exponent + len(digits)
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * -n + digits
    else:
        e = n - 1
        mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
        text = f"{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"
    return ("-" if x < 0 else "") + text


def js_json(value: Any) -> str:
    """`JSON.stringify(value)`: no whitespace, non-ASCII as is, numbers as JavaScript's."""
    if isinstance(value, dict):
        return "{" + ",".join(json.dumps(str(k), ensure_ascii=False) + ":" + js_json(v)
                              for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(js_json(v) for v in value) + "]"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int | float | Decimal):
        return _js_number(value)
    return json.dumps(str(value), ensure_ascii=False)


def _is_index(key: str) -> bool:
    return key.isascii() and key.isdigit() and (key == "0" or key[0] != "0") \
        and int(key) < 2**32 - 1


def sort_object(value: Any) -> Any:
    """NOWPayments' Node `sortObject`: keys sorted, recursing into every object (an array is
    an object to it, so it comes back keyed "0", "1", ...). JavaScript then lists integer-like
    keys first, in numeric order."""
    if isinstance(value, list | tuple):
        value = {str(i): v for i, v in enumerate(value)}
    if not isinstance(value, dict) or value is None:
        return value
    keys = sorted(value, key=lambda k: str(k).encode("utf-16-be"))
    ordered = [k for k in keys if _is_index(str(k))]
    ordered.sort(key=lambda k: int(k))
    ordered += [k for k in keys if not _is_index(str(k))]
    return {k: sort_object(value[k]) if isinstance(value[k], dict | list | tuple) else value[k]
            for k in ordered}


def sign(secret: str, body: dict[str, Any]) -> str:
    """The IPN signature: hex HMAC-SHA512 of `JSON.stringify(sortObject(body))`."""
    return hmac.new(secret.encode(), js_json(sort_object(body)).encode(),
                    hashlib.sha512).hexdigest()


def _now_iso(at: float | None = None) -> str:
    moment = datetime.fromtimestamp(time.time() if at is None else at, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _parse_date(value: str) -> float:
    text = value.strip().replace("Z", "+00:00")
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _address(currency: str) -> str:
    if currency == "btc":
        return "bc1q" + secrets.token_hex(19)
    if currency == "eth" or currency.endswith(("erc20", "bsc")):
        return "0x" + secrets.token_hex(20)
    if currency == "trx" or currency.endswith("trc20"):
        return "T" + "".join(secrets.choice(_B58) for _ in range(33))
    if currency == "xrp":
        return "r" + "".join(secrets.choice(_B58) for _ in range(33))
    if currency == "xlm":
        return "G" + "".join(secrets.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(55))
    return secrets.token_hex(20)


@dataclass(frozen=True)
class FakeConfig:
    api_keys: tuple[str, ...] = (DEFAULT_API_KEY,)
    ipn_secret: str = DEFAULT_IPN_SECRET
    public_url: str = "http://127.0.0.1:23200"
    webhook_url: str | None = None  # when set, every IPN goes here
    retry_delays: tuple[float, ...] = REAL_RETRY_DELAYS
    webhook_timeout: float = 3.0  # receivers must answer within 3000 ms
    payment_lifetime_seconds: float = PAYMENT_LIFETIME_SECONDS
    rates: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_RATES))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> FakeConfig:
        env = os.environ if env is None else env
        keys = [k.strip() for k in (env.get("NOWPAYMENTS_API_KEY") or "").split(",") if k.strip()]
        return cls(
            api_keys=tuple(keys) or (DEFAULT_API_KEY,),
            ipn_secret=env.get("NOWPAYMENTS_IPN_SECRET") or DEFAULT_IPN_SECRET,
            webhook_url=env.get("FAKE_NOWPAYMENTS_WEBHOOK_URL") or None,
        )


class ApiError(Exception):
    """An answer in NOWPayments' error envelope."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class FakePayment:
    payment_id: int
    api_key: str
    price_amount: Decimal
    price_currency: str
    pay_amount: Decimal
    pay_currency: str
    pay_address: str
    payin_extra_id: str | None
    order_id: str | None
    order_description: str | None
    ipn_callback_url: str | None
    purchase_id: str
    created: float
    valid_until: float
    usd_rate: Decimal
    status: str = "waiting"
    actually_paid: Decimal = Decimal(0)
    updated: float = 0.0
    expired_once: bool = False  # no IPN is sent once a payment expired

    def fee(self) -> dict[str, Any]:
        service = (self.actually_paid * SERVICE_FEE).quantize(Q8)
        return {"currency": self.pay_currency, "depositFee": 0, "withdrawalFee": 0,
                "serviceFee": service}

    def outcome_amount(self) -> Decimal:
        paid = self.actually_paid if self.actually_paid > 0 else self.pay_amount
        return (paid * (1 - SERVICE_FEE)).quantize(Q8)

    def public(self) -> dict[str, Any]:
        """As `GET /v1/payment/{id}` answers it."""
        return {
            "payment_id": self.payment_id, "invoice_id": None,
            "payment_status": self.status, "pay_address": self.pay_address,
            "payin_extra_id": self.payin_extra_id, "price_amount": self.price_amount,
            "price_currency": self.price_currency, "pay_amount": self.pay_amount,
            "actually_paid": self.actually_paid,
            "actually_paid_at_fiat": (self.actually_paid * self.usd_rate).quantize(Q8),
            "pay_currency": self.pay_currency, "order_id": self.order_id,
            "order_description": self.order_description, "purchase_id": self.purchase_id,
            "outcome_amount": self.outcome_amount(), "outcome_currency": self.pay_currency,
            "created_at": _now_iso(self.created), "updated_at": _now_iso(self.updated),
        }

    def created_answer(self) -> dict[str, Any]:
        """As `POST /v1/payment` answers it."""
        return {
            "payment_id": str(self.payment_id), "payment_status": self.status,
            "pay_address": self.pay_address, "payin_extra_id": self.payin_extra_id,
            "price_amount": self.price_amount, "price_currency": self.price_currency,
            "pay_amount": self.pay_amount, "amount_received": self.outcome_amount(),
            "pay_currency": self.pay_currency, "order_id": self.order_id,
            "order_description": self.order_description,
            "ipn_callback_url": self.ipn_callback_url, "created_at": _now_iso(self.created),
            "updated_at": _now_iso(self.updated), "purchase_id": self.purchase_id,
            "smart_contract": None, "network": self.pay_currency, "network_precision": None,
            "time_limit": None, "burning_percent": None,
            "expiration_estimate_date": _now_iso(self.valid_until),
            "valid_until": _now_iso(self.valid_until), "type": "crypto2crypto",
            "is_fixed_rate": False, "is_fee_paid_by_user": False,
        }

    def ipn_body(self) -> dict[str, Any]:
        body = self.public()
        if self.status in WITH_FEE:
            body["fee"] = self.fee()
        return body


@dataclass
class Delivery:
    id: str
    payment_id: int
    status: str
    url: str | None
    body: bytes
    signature: str
    sent: bool = False
    reason: str | None = None  # why it was not sent: lost | after_expiry | no_url
    redelivery_of: str | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)

    def public(self) -> dict[str, Any]:
        last = self.attempts[-1] if self.attempts else {}
        return {"id": self.id, "payment_id": self.payment_id, "payment_status": self.status,
                "url": self.url, "body": json.loads(self.body), "signature": self.signature,
                "sent": self.sent, "reason": self.reason, "redelivery_of": self.redelivery_of,
                "attempts": self.attempts, "statusCode": last.get("status_code"),
                "ok": bool(last.get("ok"))}


@dataclass
class Fault:
    operation: str  # create_payment | get_payment | list_payments | currencies | status | *
    mode: str  # error | hang
    status: int = 500
    seconds: float = 30.0
    count: int | None = None  # calls it still affects; None: until cleared


class NowPaymentsFake:
    """The fake server's world: payments, the rate table, the IPN log, injected faults."""

    def __init__(self, config: FakeConfig, transport: httpx.AsyncBaseTransport | None = None):
        self.config = config
        self.transport = transport
        self.reset()

    def reset(self) -> None:
        self.payments: dict[int, FakePayment] = {}
        self.deliveries: dict[str, Delivery] = {}
        self.rates: dict[str, Decimal] = {k.lower(): Decimal(v)
                                          for k, v in self.config.rates.items()}
        self.faults: list[Fault] = []
        self.retry_tasks: set[asyncio.Task] = set()
        self._delivery_seq = 0

    # ----------------------------------------------------------------- API side

    def check_key(self, request: Request) -> str:
        key = request.headers.get("x-api-key", "")
        for valid in self.config.api_keys:
            if hmac.compare_digest(key.encode(), valid.encode()):
                return valid
        raise ApiError(403, "INVALID_API_KEY", "Invalid api key")

    def fault_for(self, operation: str) -> Fault | None:
        for fault in self.faults:
            if fault.operation in (operation, "*"):
                if fault.count is not None:
                    fault.count -= 1
                    if fault.count <= 0:
                        self.faults.remove(fault)
                return fault
        return None

    def get(self, payment_id: str, api_key: str | None = None) -> FakePayment:
        try:
            payment = self.payments.get(int(payment_id))
        except ValueError:
            payment = None
        if payment is None or (api_key is not None and payment.api_key != api_key):
            raise ApiError(404, "NOT_FOUND", "Payment not found")
        return payment

    def _new_payment_id(self) -> int:
        while True:
            candidate = secrets.randbelow(5_000_000_000) + 4_000_000_000
            if candidate not in self.payments:
                return candidate

    def create_payment(self, api_key: str, body: Any) -> FakePayment:
        if not isinstance(body, dict):
            raise ApiError(400, "INVALID_REQUEST_PARAMS", "Request body must be an object")
        for name in ("price_amount", "price_currency", "pay_currency"):
            if body.get(name) in (None, ""):
                raise ApiError(400, "INVALID_REQUEST_PARAMS", f'"{name}" is required')
        raw = body["price_amount"]
        try:
            if isinstance(raw, bool):
                raise InvalidOperation
            price = Decimal(str(raw))
            if not price.is_finite() or price <= 0:
                raise InvalidOperation
        except (InvalidOperation, ValueError):
            raise ApiError(400, "INVALID_REQUEST_PARAMS",
                           '"price_amount" must be a positive number') from None
        price_currency = str(body["price_currency"]).lower()
        pay_currency = str(body["pay_currency"]).lower()
        if price_currency in FIAT:
            usd = price * FIAT[price_currency]
        elif price_currency in self.rates:
            usd = price * self.rates[price_currency]
        else:
            raise ApiError(400, "INVALID_REQUEST_PARAMS", '"price_currency" is not valid')
        rate = self.rates.get(pay_currency)
        if rate is None:
            raise ApiError(400, "INVALID_REQUEST_PARAMS",
                           f"Currency {pay_currency} was not found or is unavailable")
        url = body.get("ipn_callback_url")
        if url is not None and (not isinstance(url, str)
                                or not url.startswith(("http://", "https://"))):
            raise ApiError(400, "INVALID_REQUEST_PARAMS", '"ipn_callback_url" must be a valid uri')
        now = time.time()
        payment = FakePayment(
            payment_id=self._new_payment_id(), api_key=api_key, price_amount=price,
            price_currency=price_currency,
            pay_amount=(usd / rate).quantize(Q8, rounding=ROUND_UP), pay_currency=pay_currency,
            pay_address=_address(pay_currency),
            payin_extra_id=str(secrets.randbelow(9_000_000_000) + 1_000_000_000)
            if pay_currency in MEMO_CURRENCIES else None,
            order_id=None if body.get("order_id") is None else str(body["order_id"]),
            order_description=None if body.get("order_description") is None
            else str(body["order_description"]),
            ipn_callback_url=url, purchase_id=str(secrets.randbelow(9_000_000_000) + 10**9),
            created=now, updated=now, valid_until=now + self.config.payment_lifetime_seconds,
            usd_rate=rate)
        self.payments[payment.payment_id] = payment
        return payment

    def list_payments(self, api_key: str, query: Mapping[str, str]) -> dict[str, Any]:
        def number(name: str, default: int, low: int, high: int) -> int:
            raw = query.get(name)
            if raw is None or raw == "":
                return default
            try:
                value = int(raw)
            except ValueError:
                value = low - 1
            if not low <= value <= high:
                raise ApiError(400, "INVALID_REQUEST_PARAMS",
                               f'"{name}" must be between {low} and {high}')
            return value

        limit = number("limit", 10, 1, 500)
        page = number("page", 0, 0, 10**9)
        sort_by = query.get("sortBy") or "created_at"
        order_by = (query.get("orderBy") or "asc").lower()
        if sort_by not in SORTABLE or order_by not in ("asc", "desc"):
            raise ApiError(400, "INVALID_REQUEST_PARAMS", "sortBy or orderBy is not valid")
        try:
            since = _parse_date(query["dateFrom"]) if query.get("dateFrom") else None
            until = _parse_date(query["dateTo"]) if query.get("dateTo") else None
        except ValueError:
            raise ApiError(400, "INVALID_REQUEST_PARAMS", "dateFrom or dateTo is not a date"
                           ) from None
        rows = [p for p in self.payments.values() if p.api_key == api_key
                and (since is None or p.created >= since) and (until is None or p.created <= until)]
        if query.get("invoiceId"):
            rows = []  # payments made through the invoice API only; the fake has none

        def key(p: FakePayment) -> Any:
            if sort_by == "created_at":
                return p.created
            value = p.public().get(sort_by)
            return (value is None, value if not isinstance(value, str) else value.lower())

        rows.sort(key=key, reverse=order_by == "desc")
        total = len(rows)
        return {"data": [p.public() for p in rows[page * limit:(page + 1) * limit]],
                "limit": limit, "page": page, "pagesCount": math.ceil(total / limit),
                "total": total}

    # ----------------------------------------------------------------- payment life

    def expire_if_due(self, payment: FakePayment) -> list[Delivery]:
        if payment.status == "waiting" and time.time() >= payment.valid_until:
            return self.set_status(payment, "expired")
        return []

    def set_status(self, payment: FakePayment, status: str, *,
                   actually_paid: Decimal | None = None, notify: bool = True) -> list[Delivery]:
        if status not in STATUSES:
            raise ApiError(400, "INVALID_REQUEST_PARAMS", f"unknown payment_status {status}")
        payment.status = status
        if actually_paid is not None:
            payment.actually_paid = actually_paid
        payment.updated = time.time()
        reason = "after_expiry" if payment.expired_once else None if notify else "lost"
        delivery = self._delivery(payment, reason)
        payment.expired_once |= status == "expired"
        return [delivery]

    def deposit_steps(self, payment: FakePayment, amount: Decimal | None,
                      until: str | None) -> tuple[Decimal, list[str]]:
        """The customer's deposit (default: pay_amount, or what was already seen) and the steps
        NOWPayments then takes: confirming, confirmed, sending, then finished (all of
        pay_amount or more) or partially_paid; `until` stops early."""
        if payment.status in ("waiting", "expired"):
            paid, start = payment.pay_amount if amount is None else amount, 0
        elif payment.status in STEPS:
            paid = payment.actually_paid if amount is None else amount
            start = STEPS.index(payment.status) + 1
        else:
            raise ApiError(409, "INVALID_STATE", f"a {payment.status} payment takes no deposit")
        steps = [*STEPS, "finished" if paid >= payment.pay_amount else "partially_paid"]
        if until is not None and until not in steps:
            raise ApiError(400, "INVALID_REQUEST_PARAMS", f"until must be one of {steps}")
        stop = steps.index(until) if until is not None else len(steps) - 1
        return paid, steps[start:stop + 1]

    # ----------------------------------------------------------------- IPNs

    def _delivery(self, payment: FakePayment, reason: str | None,
                  redelivery_of: str | None = None, body: dict[str, Any] | None = None
                  ) -> Delivery:
        body = payment.ipn_body() if body is None else body
        url = self.config.webhook_url or payment.ipn_callback_url
        if reason is None and not url:
            reason = "no_url"
        self._delivery_seq += 1
        d = Delivery(id=f"d{self._delivery_seq}", payment_id=payment.payment_id,
                     status=str(body["payment_status"]), url=url,
                     body=js_json(body).encode(), signature=sign(self.config.ipn_secret, body),
                     reason=reason, redelivery_of=redelivery_of)
        if self.config.ipn_secret:  # no IPN secret generated: no IPNs at all
            self.deliveries[d.id] = d
        return d

    def redelivery(self, original: Delivery) -> Delivery:
        """A recurrent notification of the same step: the same payment and status, sent anew
        (its `updated_at` is now)."""
        body = json.loads(original.body)
        body["updated_at"] = _now_iso()
        return self._delivery(self.payments[original.payment_id], None,
                              redelivery_of=original.id, body=body)

    async def send_all(self, deliveries: list[Delivery]) -> None:
        for d in deliveries:
            if d.reason is None and d.id in self.deliveries:
                await self.send(d)

    async def send(self, delivery: Delivery, *, retry: bool = True) -> bool:
        """One attempt now; on failure the recurrent notifications, in the background."""
        if not delivery.url or delivery.id not in self.deliveries:
            return False
        delivery.sent, delivery.reason = True, None
        ok = await self._attempt(delivery)
        if not ok and retry and self.config.retry_delays:
            task = asyncio.create_task(self._retry(delivery))
            self.retry_tasks.add(task)
            task.add_done_callback(self.retry_tasks.discard)
        return ok

    async def _retry(self, delivery: Delivery) -> None:
        for delay in self.config.retry_delays:
            await asyncio.sleep(delay)
            if await self._attempt(delivery):
                return

    async def _attempt(self, delivery: Delivery) -> bool:
        headers = {"Content-Type": "application/json", "User-Agent": "NOWPayments IPN",
                   "x-nowpayments-sig": delivery.signature}
        record: dict[str, Any] = {"at": time.time(), "status_code": None, "ok": False}
        try:
            async with httpx.AsyncClient(timeout=self.config.webhook_timeout,
                                         transport=self.transport) as client:
                resp = await client.post(delivery.url, content=delivery.body, headers=headers)
            record.update(status_code=resp.status_code, ok=200 <= resp.status_code < 300)
        except httpx.HTTPError as exc:
            record["error"] = type(exc).__name__
        delivery.attempts.append(record)
        return bool(record["ok"])


def _answer(body: Any, status: int = 200) -> Response:
    return Response(js_json(body), status_code=status, media_type="application/json")


def _error(status: int, code: str, message: str) -> Response:
    return _answer({"status": False, "statusCode": status, "code": code, "message": message},
                   status)


async def _json_body(request: Request) -> Any:
    return _parse(await request.body())


def _parse(raw: bytes) -> Any:
    if not raw:
        return {}
    try:
        return json.loads(raw, parse_float=Decimal)
    except ValueError:
        raise ApiError(400, "INVALID_REQUEST_PARAMS", "Unexpected token in JSON") from None


def _decimal(value: Any, name: str) -> Decimal | None:
    if value is None:
        return None
    try:
        amount = Decimal(str(value))
        if not amount.is_finite() or amount < 0:
            raise InvalidOperation
    except (InvalidOperation, ValueError):
        raise ApiError(400, "INVALID_REQUEST_PARAMS", f"{name} must be a number >= 0") from None
    return amount


def create_app(config: FakeConfig | None = None,
               transport: httpx.AsyncBaseTransport | None = None) -> FastAPI:
    fake = NowPaymentsFake(config or FakeConfig(), transport)
    app = FastAPI(title="NOWPayments fake", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.fake = fake
    lock = asyncio.Lock()

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError):
        return _error(exc.status, exc.code, exc.message)

    async def faulted(operation: str) -> Response | None:
        fault = fake.fault_for(operation)
        if fault is None:
            return None
        if fault.mode == "hang":
            await asyncio.sleep(fault.seconds)
            return None
        if fault.status == 429:  # the limiter answers before auth, with nginx's page
            return HTMLResponse(RATE_LIMITED_PAGE, status_code=429)
        return _error(fault.status, "INTERNAL_ERROR", "Internal server error")

    @app.get("/v1/status")
    async def api_status():
        if (r := await faulted("status")) is not None:
            return r
        return _answer({"message": "OK"})

    @app.get("/v1/currencies")
    async def currencies(request: Request):
        if (r := await faulted("currencies")) is not None:
            return r
        fake.check_key(request)
        return _answer({"currencies": sorted(fake.rates)})

    @app.post("/v1/payment")
    async def create_payment(request: Request):
        raw = await request.body()  # received, then answered late or not at all
        if (r := await faulted("create_payment")) is not None:
            return r
        key = fake.check_key(request)
        body = _parse(raw)
        async with lock:
            payment = fake.create_payment(key, body)
        return _answer(payment.created_answer(), 201)

    @app.get("/v1/payment/")
    async def list_payments(request: Request):
        if (r := await faulted("list_payments")) is not None:
            return r
        key = fake.check_key(request)
        return _answer(fake.list_payments(key, request.query_params))

    @app.get("/v1/payment/{payment_id}")
    async def get_payment(payment_id: str, request: Request):
        if (r := await faulted("get_payment")) is not None:
            return r
        key = fake.check_key(request)
        async with lock:
            payment = fake.get(payment_id, key)
            sent = fake.expire_if_due(payment)
        await fake.send_all(sent)
        return _answer(payment.public())

    # ----------------------------------------------------------------- control API

    async def changed(payment: FakePayment, deliveries: list[Delivery], *,
                      send: bool = False) -> Response:
        if send:
            await fake.send_all(deliveries)
        return _answer({"payment": payment.public(),
                        "deliveries": [d.public() for d in deliveries]})

    @app.get("/_fake/payments")
    async def all_payments():
        return _answer({"payments": [{**p.public(), "ipn_callback_url": p.ipn_callback_url,
                                      "valid_until": _now_iso(p.valid_until)}
                                     for p in fake.payments.values()]})

    @app.get("/_fake/payments/{payment_id}")
    async def one_payment(payment_id: str):
        return _answer(fake.get(payment_id).public())

    @app.post("/_fake/payments/{payment_id}/pay")
    async def pay(payment_id: str, request: Request):
        """`{amount?, until?, notify?}`: a deposit of `amount` (default: pay_amount), then the
        steps to `until` (default: the end), each with its IPN (lost when `notify` is false)."""
        body = await _json_body(request)
        notify = bool(body.get("notify", True))
        async with lock:
            payment = fake.get(payment_id)
            sent = fake.expire_if_due(payment)
            paid, steps = fake.deposit_steps(payment, _decimal(body.get("amount"), "amount"),
                                             body.get("until"))
        await fake.send_all(sent)
        for status in steps:  # each step's IPN is sent before the next step is taken
            async with lock:
                step = fake.set_status(payment, status, actually_paid=paid, notify=notify)
            await fake.send_all(step)
            sent += step
        return await changed(payment, sent)

    @app.post("/_fake/payments/{payment_id}/status")
    async def set_status(payment_id: str, request: Request):
        """`{status, actually_paid?, notify?}`: any status at once (failed, refunded, ...)."""
        body = await _json_body(request)
        async with lock:
            payment = fake.get(payment_id)
            sent = fake.set_status(payment, str(body.get("status")),
                                   actually_paid=_decimal(body.get("actually_paid"),
                                                          "actually_paid"),
                                   notify=bool(body.get("notify", True)))
        return await changed(payment, sent, send=True)

    @app.post("/_fake/payments/{payment_id}/expire")
    async def expire(payment_id: str, request: Request):
        body = await _json_body(request)
        async with lock:
            payment = fake.get(payment_id)
            if payment.status != "waiting":
                raise ApiError(409, "INVALID_STATE", f"a {payment.status} payment cannot expire")
            sent = fake.set_status(payment, "expired", notify=bool(body.get("notify", True)))
        return await changed(payment, sent, send=True)

    @app.get("/_fake/deliveries")
    async def deliveries(payment_id: int | None = None, status: str | None = None):
        return _answer({"deliveries": [
            d.public() for d in fake.deliveries.values()
            if (payment_id is None or d.payment_id == payment_id)
            and (status is None or d.status == status)]})

    def delivery(delivery_id: str) -> Delivery:
        d = fake.deliveries.get(delivery_id)
        if d is None:
            raise ApiError(404, "NOT_FOUND", "Delivery not found")
        return d

    @app.post("/_fake/deliveries/{delivery_id}/send")
    async def send(delivery_id: str):
        """Send a delivery now: a lost one, or the very same bytes again."""
        d = delivery(delivery_id)
        await fake.send(d, retry=False)
        return _answer(d.public())

    @app.post("/_fake/deliveries/{delivery_id}/redeliver")
    async def redeliver(delivery_id: str):
        again = fake.redelivery(delivery(delivery_id))
        await fake.send(again, retry=False)
        return _answer(again.public())

    @app.get("/_fake/rates")
    async def rates():
        return _answer({"rates": fake.rates})

    @app.post("/_fake/rates")
    async def set_rates(request: Request):
        """`{currency: usd_per_unit, ...}` merged into the rate table."""
        body = await _json_body(request)
        if not isinstance(body, dict):
            raise ApiError(400, "INVALID_REQUEST_PARAMS", "an object of rates is required")
        for code, value in body.items():
            rate = _decimal(value, code)
            if rate is None or rate <= 0:
                raise ApiError(400, "INVALID_REQUEST_PARAMS", f"{code} must be > 0")
            fake.rates[str(code).lower()] = rate
        return _answer({"rates": fake.rates})

    @app.post("/_fake/faults")
    async def add_fault(request: Request):
        """`{operation, mode: error|hang, status?, seconds?, count?}`."""
        body = await _json_body(request)
        mode = body.get("mode", "error")
        if mode not in ("error", "hang"):
            raise ApiError(400, "INVALID_REQUEST_PARAMS", "mode is error or hang")
        count = body.get("count")
        fault = Fault(operation=str(body.get("operation") or "*"), mode=mode,
                      status=int(body.get("status", 500)),
                      seconds=float(body.get("seconds", 30)),
                      count=None if count is None else int(count))
        fake.faults.append(fault)
        return _answer({"faults": [f.__dict__ for f in fake.faults]})

    @app.delete("/_fake/faults")
    async def clear_faults():
        fake.faults.clear()
        return _answer({"faults": []})

    @app.post("/_fake/reset")
    async def reset():
        for task in list(fake.retry_tasks):
            task.cancel()
        fake.reset()
        return _answer({"ok": True})

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fakes.nowpayments")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=23200)
    parser.add_argument("--webhook-url", default=None,
                        help="send every IPN here instead of the payment's ipn_callback_url")
    parser.add_argument("--api-key", action="append", default=None,
                        help="an accepted x-api-key (repeat for several)")
    parser.add_argument("--ipn-secret", default=None)
    ns = parser.parse_args(argv)
    env_config = FakeConfig.from_env()
    config = FakeConfig(**{**env_config.__dict__,
                           "public_url": f"http://{ns.host}:{ns.port}",
                           "webhook_url": ns.webhook_url or env_config.webhook_url,
                           "api_keys": tuple(ns.api_key or env_config.api_keys),
                           "ipn_secret": ns.ipn_secret or env_config.ipn_secret})
    logging.basicConfig(level=logging.INFO)
    uvicorn.run(create_app(config), host=ns.host, port=ns.port, log_level="warning")


if __name__ == "__main__":
    main()
