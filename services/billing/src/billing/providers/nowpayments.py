"""The NOWPayments provider (payment API over httpx) and its IPN webhooks.

A checkout is one NOWPayments payment (`POST /payment`) priced in USD: NOWPayments converts it
at its own rate and answers the amount of the pay currency to send (`pay_amount`) and the
deposit address (`pay_address`, plus `payin_extra_id` for memo/tag coins). The invoice records
that amount, so the rate is NOWPayments'. `observe` reads the payment (`GET /payment/{id}`):
one NOWPayments payment is one observed payment, keyed by its `payment_id`, for the amount
`actually_paid`:

- `waiting`, `expired`: nothing paid (our invoice expiry job closes the invoice);
- `confirming`, `confirmed`, `sending`: seen, not yet confirmed;
- `finished`: confirmed (more than `pay_amount`: the settle step records the over-payment);
- `partially_paid`: confirmed with the smaller amount (NOWPayments credited it, nothing is
  refunded): the invoice stays open and, when it expires, records the under-payment;
- `failed`, `refunded`, `cancelled`: failed, nothing credited. A refund made in NOWPayments
  after the invoice was PAID changes nothing here: refunding the invoice is our admin's refund.

A repeated deposit to the same address is a new NOWPayments payment (with `parent_payment_id`):
it names no invoice of ours and is stored, not credited (staff settle it by hand).

IPNs (`NowPaymentsWebhooks`) are signed `x-nowpayments-sig: hex(HMAC-SHA512(IPN secret, the
body's JSON with keys sorted recursively, no whitespace))`, as NOWPayments' Node signer writes it
(non-ASCII as is, numbers as JavaScript prints them); a redelivery of the same
`(payment_id, payment_status)` is the same delivery.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

import httpx

from billing.models import Invoice
from billing.providers.base import (
    Checkout,
    CheckoutRequest,
    Observed,
    ObservedPayment,
    ProviderError,
    SignedWebhooks,
    WebhookDelivery,
    json_object,
    observe_each,
    text_field,
)
from billing.rates import ASSET_QUANTUM
from runtime.errors import ValidationFailed

NAME = "nowpayments"
NETWORK = "NOWPAYMENTS"
SIGNATURE_HEADER = "x-nowpayments-sig"
SEEN = frozenset({"confirming", "confirmed", "sending"})
CONFIRMED = frozenset({"finished", "partially_paid"})
FAILED = frozenset({"failed", "refunded", "cancelled"})
NOTHING = frozenset({"waiting", "expired"})
_REF = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


# ------------------------------------------------------------------ the IPN signature

def _js_number(value: int | float) -> str:
    """A JSON number as JavaScript's `JSON.stringify` prints it (ECMAScript Number::toString):
    `1e-7`, `0.00001`, `100` for 100.0, `1e+21`."""
    if isinstance(value, int) and abs(value) < 2**53:
        return str(value)
    x = float(value)
    if not math.isfinite(x):
        return "null"
    if x == 0:
        return "0"
    sign = "-" if x < 0 else ""
    digits_tuple, exponent = Decimal(repr(abs(x))).as_tuple()[1:]
    digits = "".join(map(str, digits_tuple)).rstrip("0") or "0"
    exponent += len("".join(map(str, digits_tuple))) - len(digits)
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
    return sign + text


def _is_index(key: str) -> bool:
    return key.isascii() and key.isdigit() and (key == "0" or key[0] != "0") \
        and int(key) < 2**32 - 1


def _js_keys(keys: list[str]) -> list[str]:
    """`Object.keys(o).sort()` re-inserted into an object: JavaScript lists integer-like keys
    first, in numeric order, then the others in UTF-16 order."""
    indices = sorted((k for k in keys if _is_index(k)), key=int)
    rest = sorted((k for k in keys if not _is_index(k)), key=lambda k: k.encode("utf-16-be"))
    return indices + rest


def _js_canonical(value: Any, arrays_as_objects: bool) -> str:
    """`JSON.stringify(sortObject(value))`. NOWPayments' `sortObject` recurses into whatever
    is an object, arrays included (which it turns into objects keyed "0", "1", ...) when
    `arrays_as_objects`."""
    if isinstance(value, dict):
        return "{" + ",".join(
            json.dumps(k, ensure_ascii=False) + ":" + _js_canonical(value[k], arrays_as_objects)
            for k in _js_keys(list(value))) + "}"
    if isinstance(value, list):
        if arrays_as_objects:
            return _js_canonical({str(i): v for i, v in enumerate(value)}, True)
        return "[" + ",".join(_js_canonical(v, False) for v in value) + "]"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int | float):
        return _js_number(value)
    return json.dumps(value, ensure_ascii=False)


def _has_array(value: Any) -> bool:
    if isinstance(value, list):
        return True
    return isinstance(value, dict) and any(_has_array(v) for v in value.values())


def signed_texts(data: dict[str, Any]) -> list[str]:
    """The texts a genuine IPN of this body may be signed over: the Node signer's (the one
    NOWPayments documents; arrays kept, or made objects by its `sortObject`), then the
    official Python example's (`json.dumps(sort_keys=True)`: non-ASCII escaped)."""
    texts = [_js_canonical(data, arrays_as_objects=False)]
    if _has_array(data):
        texts.append(_js_canonical(data, arrays_as_objects=True))
    texts.append(json.dumps(data, sort_keys=True, separators=(",", ":")))
    return list(dict.fromkeys(texts))


def sign(secret: str, data: dict[str, Any]) -> str:
    """The signature NOWPayments sends with an IPN of `data` (hex HMAC-SHA512)."""
    return hmac.new(secret.encode(), signed_texts(data)[0].encode(), hashlib.sha512).hexdigest()


def valid_signature(secret: str, body: bytes, header: str | None) -> bool:
    """True when `header` is the HMAC-SHA512 of the body's canonical text under `secret`,
    compared in constant time (every candidate text is compared)."""
    if not secret or not header:
        return False
    try:
        data = json.loads(body)
    except ValueError:
        return False
    if not isinstance(data, dict):
        return False
    given = header.strip().lower().encode("utf-8", "replace")
    ok = False
    for text in signed_texts(data):
        expected = hmac.new(secret.encode(), text.encode(), hashlib.sha512).hexdigest()
        ok |= hmac.compare_digest(expected.encode(), given)
    return ok


def _ref(value: Any, field: str) -> str | None:
    """A NOWPayments id (a number, or its text) as our reference text, or None."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | str) or not _REF.match(str(value)):
        raise ValidationFailed(f"{field} is not a valid identifier", {"field": field})
    return str(value)


class NowPaymentsWebhooks(SignedWebhooks):
    """NOWPayments' IPNs: the body is the payment as `GET /payment/{id}` answers it; a delivery
    is one (payment, status) step, so a recurrent notification of the same step is a
    duplicate and a new status a new delivery."""

    name = NAME
    signature_header = SIGNATURE_HEADER
    signature_valid = staticmethod(valid_signature)

    def parse(self, body: bytes) -> WebhookDelivery:
        data = json_object(body)
        ref = _ref(data.get("payment_id"), "payment_id")
        if ref is None:
            raise ValidationFailed("payment_id is required", {"field": "payment_id"})
        status = text_field(data, "payment_status")
        if status is None:
            raise ValidationFailed("payment_status is required", {"field": "payment_status"})
        return WebhookDelivery(delivery_id=f"{ref}:{status}", event_type=status,
                               provider_ref=ref)


# ------------------------------------------------------------------ the provider

def _amount(value: Any) -> Decimal:
    """An amount NOWPayments answered (a number or its text), to our 8 decimals."""
    if value is None or value == "":
        return Decimal(0)
    if isinstance(value, bool):
        raise InvalidOperation
    amount = Decimal(str(value))
    if not amount.is_finite() or amount < 0:
        raise InvalidOperation
    return amount.quantize(ASSET_QUANTUM, rounding=ROUND_HALF_UP)


def shown_address(pay_address: str, extra_id: str | None) -> str:
    """The address the customer copies; a memo/tag coin's `payin_extra_id` follows it as
    `<address> memo:<id>` (the wallet's memo, tag or destination field)."""
    return f"{pay_address} memo:{extra_id}" if extra_id else pay_address


class NowPaymentsProvider:
    name = NAME
    title = "NOWPayments"
    # NOWPayments converts the USD price itself: the invoice records its `pay_amount`.
    prices_invoices = True

    def __init__(self, api_base: str, api_key: str, pay_currencies: Sequence[str],
                 ipn_url: str | None, timeout: float,
                 transport: httpx.AsyncBaseTransport | None = None, concurrency: int = 8):
        # our asset (upper case) -> the NOWPayments currency code it is paid in
        self.currencies = {c.upper(): c.lower() for c in pay_currencies}
        self.ipn_url = ipn_url
        self.concurrency = concurrency  # payments read at once by `observe_many`
        self.client = httpx.AsyncClient(
            base_url=api_base.rstrip("/"),
            timeout=httpx.Timeout(timeout, connect=min(3.0, timeout)),
            headers={"x-api-key": api_key, "Accept": "application/json"},
            transport=transport,
        )

    def options(self) -> list[tuple[str, str]]:
        return [(asset, NETWORK) for asset in self.currencies]

    async def _request(self, operation: str, method: str, path: str, **kwargs: Any) -> Any:
        try:
            resp = await self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ProviderError(self.name, operation, type(exc).__name__) from exc
        try:
            data = json.loads(resp.content, parse_float=Decimal)
        except ValueError:
            data = None
        if resp.status_code >= 400:
            code = data.get("code") if isinstance(data, dict) else None
            message = data.get("message") if isinstance(data, dict) else resp.text
            raise ProviderError(self.name, operation,
                                f"HTTP {resp.status_code} {code or ''}: {str(message)[:200]}")
        if not isinstance(data, dict):
            raise ProviderError(self.name, operation, "answer is not a JSON object")
        return data

    async def create_checkout(self, request: CheckoutRequest) -> Checkout:
        body: dict[str, Any] = {
            "price_amount": float(request.amount_usd),
            "price_currency": "usd",
            "pay_currency": self.currencies.get(request.asset, request.asset.lower()),
            "order_id": request.invoice_id,
            "order_description": f"Invoice {request.invoice_id}",
        }
        if self.ipn_url:
            body["ipn_callback_url"] = self.ipn_url
        data = await self._request("create_payment", "POST", "/payment", json=body)
        try:
            ref = _ref(data.get("payment_id"), "payment_id")
            amount = _amount(data.get("pay_amount"))
            extra = _ref(data.get("payin_extra_id"), "payin_extra_id")
        except (ValidationFailed, InvalidOperation) as exc:
            raise ProviderError(self.name, "create_payment", "unexpected answer") from exc
        address = data.get("pay_address")
        if ref is None or amount <= 0 or not isinstance(address, str) or not address:
            raise ProviderError(self.name, "create_payment",
                                "answer without payment_id, pay_address or pay_amount")
        return Checkout(provider_ref=ref, address=shown_address(address, extra),
                        payment_url=None, amount_asset=amount)

    async def observe(self, invoice: Invoice) -> list[ObservedPayment]:
        ref = invoice.provider_ref
        if not ref:
            return []
        data = await self._request("get_payment", "GET", f"/payment/{ref}")
        status = data.get("payment_status")
        try:
            paid = _amount(data.get("actually_paid"))
            due = _amount(data.get("pay_amount"))
        except InvalidOperation as exc:
            raise ProviderError(self.name, "get_payment", "unexpected amounts") from exc
        if status in NOTHING or (status in (SEEN | FAILED) and paid <= 0):
            return []
        if status in SEEN:
            return [ObservedPayment(txid=ref, amount_asset=paid, confirmations=0,
                                    confirmed=False)]
        if status in CONFIRMED:
            # `finished` without an amount read: paid what was asked
            amount = paid if paid > 0 else due
            return [ObservedPayment(txid=ref, amount_asset=amount, confirmations=1,
                                    confirmed=True)] if amount > 0 else []
        if status in FAILED:
            return [ObservedPayment(txid=ref, amount_asset=paid, confirmations=0,
                                    confirmed=False, failed=True)]
        raise ProviderError(self.name, "get_payment", f"unknown payment_status {status!r:.40}")

    async def observe_many(self, invoices: Sequence[Invoice]) -> Observed:
        return await observe_each(self, invoices, self.concurrency)

    async def close(self) -> None:
        await self.client.aclose()
