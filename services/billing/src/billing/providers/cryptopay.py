"""The Crypto Pay provider (@CryptoBot's merchant API, over httpx) and its webhooks.

A checkout is a Crypto Pay invoice in fiat: `amount` USD (our `amount_usd`), payable in any of
`CRYPTOPAY_ACCEPTED_ASSETS`, `payload` = our invoice id, expiring with our rate lock. The
customer picks the coin inside Crypto Bot, which prices it itself; so our invoice is in `USD` on
the network `CRYPTOPAY` at rate 1, and the customer pays on its `bot_invoice_url`.

A Crypto Pay invoice is paid in full or not at all (`status` active → paid, or → expired): there
is no partial or over-payment. A paid invoice is one confirmed payment of its `amount` USD
(txid `cryptopay:<invoice_id>`); an active or expired one is nothing paid (our invoice expiry
job expires ours). Polling reads up to 1000 invoices per `getInvoices` call.

Webhooks (`invoice_paid`) are signed with the app's token (`CryptoPayWebhooks`); their
`update_id` is not unique, so a delivery is named by its update type and invoice id, and a
replay is a duplicate. The handler then observes the invoice like the poller.

Crypto Pay has no refund of an invoice: a refund in billing records the decision (or credits
the customer's balance); sending coins back is done in @CryptoBot by hand.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
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
    observe_one,
)
from runtime.errors import ValidationFailed

NAME = "cryptopay"
TOKEN_HEADER = "Crypto-Pay-API-Token"
SIGNATURE_HEADER = "crypto-pay-api-signature"
# Our side of a Crypto Pay invoice: priced in USD, the coin chosen inside Crypto Bot.
ASSET, NETWORK = "USD", "CRYPTOPAY"
MAX_EXPIRES_IN = 2_678_400  # seconds (31 days), Crypto Pay's limit
BATCH = 1000  # invoice ids per getInvoices call (its `count` limit)


def sign(token: str, body: bytes) -> str:
    """hex HMAC-SHA256 of the raw body, keyed with the raw SHA-256 of the app's token."""
    key = hashlib.sha256(token.encode()).digest()
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def valid_signature(token: str, body: bytes, header: str | None) -> bool:
    """Compared in constant time; no token configured means nothing is authentic."""
    if not token or not header:
        return False
    expected = sign(token, body).encode()
    return hmac.compare_digest(expected, header.strip().lower().encode("utf-8", "replace"))


def error_text(data: Any) -> str:
    """What an `{"ok": false, "error": ...}` answer says; the error is seen both as
    `{code, name}` and `{code, message}`, and documented only as "the error field"."""
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        code = error.get("code")
        name = error.get("name") or error.get("message") or "unknown error"
        return f"{code} {name}" if code is not None else str(name)
    return str(error) if error else "answer without ok"


class CryptoPayClient:
    """Calls `<api base>/<method>` with the app's token; the result of `{"ok": true}` or a
    ProviderError (network, timeout, `ok: false`, not JSON). The token never appears in
    messages."""

    def __init__(self, api_base: str, token: str, timeout: float,
                 transport: httpx.AsyncBaseTransport | None = None):
        self.client = httpx.AsyncClient(
            base_url=api_base.rstrip("/"),
            timeout=httpx.Timeout(timeout, connect=min(3.0, timeout)),
            headers={TOKEN_HEADER: token, "Accept": "application/json"},
            transport=transport,
        )

    async def call(self, operation: str, method: str, params: dict[str, Any] | None = None
                   ) -> Any:
        try:
            resp = await self.client.post(f"/{method}", json=params or {})
        except httpx.HTTPError as exc:
            raise ProviderError(NAME, operation, type(exc).__name__) from exc
        try:
            data = resp.json()
        except ValueError as exc:
            raise ProviderError(NAME, operation,
                                f"HTTP {resp.status_code}: answer is not JSON") from exc
        if not isinstance(data, dict) or data.get("ok") is not True or "result" not in data:
            raise ProviderError(NAME, operation,
                                f"HTTP {resp.status_code}: {error_text(data)[:200]}")
        return data["result"]

    async def close(self) -> None:
        await self.client.aclose()


class CryptoPayWebhooks(SignedWebhooks):
    """Crypto Pay's webhooks: `crypto-pay-api-signature` over the raw body; the body is
    `{update_id, update_type, request_date, payload: <Invoice>}`. `update_id` is not unique,
    so the delivery id is `<update_type>:<invoice_id>` (an invoice is paid once)."""

    name = NAME
    signature_header = SIGNATURE_HEADER
    signature_valid = staticmethod(valid_signature)  # the secret is the app's token

    def parse(self, body: bytes) -> WebhookDelivery:
        data = json_object(body)
        update_type = data.get("update_type")
        if not isinstance(update_type, str) or not 0 < len(update_type) <= 64 \
                or not update_type.replace("_", "").isalnum():
            raise ValidationFailed("update_type is required", {"field": "update_type"})
        payload = data.get("payload")
        if not isinstance(payload, dict):
            raise ValidationFailed("payload must be an invoice", {"field": "payload"})
        ref = invoice_ref(payload.get("invoice_id"))
        if ref is None:
            raise ValidationFailed("payload.invoice_id is required",
                                   {"field": "payload.invoice_id"})
        return WebhookDelivery(delivery_id=f"{update_type}:{ref}", event_type=update_type,
                               provider_ref=ref)


def invoice_ref(value: Any) -> str | None:
    """A Crypto Pay invoice id (a positive integer, or its digits) as our provider_ref."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value > 0:
        return str(value)
    if isinstance(value, str) and value.isdigit() and len(value) <= 20 and int(value) > 0:
        return str(int(value))
    return None


def expires_in(expires_at: datetime, now: datetime | None = None) -> int:
    """Seconds until our rate lock ends, within Crypto Pay's 1..2678400."""
    seconds = (expires_at - (now or datetime.now(UTC))).total_seconds()
    return max(1, min(MAX_EXPIRES_IN, math.ceil(seconds)))


class CryptoPayProvider:
    name = NAME
    title = "Crypto Bot"
    prices_invoices = True  # Crypto Bot prices the coin: no exchange rate of ours is needed

    def __init__(self, api_base: str, token: str, timeout: float, accepted_assets: Sequence[str],
                 transport: httpx.AsyncBaseTransport | None = None):
        self.api = CryptoPayClient(api_base, token, timeout, transport)
        self.accepted_assets = [a.strip().upper() for a in accepted_assets if a.strip()]

    def options(self) -> list[tuple[str, str]]:
        return [(ASSET, NETWORK)]

    async def create_checkout(self, request: CheckoutRequest) -> Checkout:
        params: dict[str, Any] = {
            "currency_type": "fiat", "fiat": "USD",
            "amount": format(request.amount_usd, "f"),
            "payload": request.invoice_id,
            "description": f"Invoice {request.invoice_id}",
            "expires_in": expires_in(request.expires_at),
        }
        if self.accepted_assets:
            params["accepted_assets"] = ",".join(self.accepted_assets)
        data = await self.api.call("create_invoice", "createInvoice", params)
        ref = invoice_ref(data.get("invoice_id")) if isinstance(data, dict) else None
        if ref is None:
            raise ProviderError(self.name, "create_invoice", "answer without an invoice id")
        # `pay_url` is deprecated in favour of `bot_invoice_url`: only a fallback.
        url = data.get("bot_invoice_url") or data.get("pay_url") or data.get(
            "mini_app_invoice_url") or data.get("web_app_invoice_url")
        return Checkout(provider_ref=ref, address=None, payment_url=url,
                        amount_asset=request.amount_usd)

    async def observe(self, invoice: Invoice) -> list[ObservedPayment]:
        return await observe_one(self, invoice)

    async def observe_many(self, invoices: Sequence[Invoice]) -> Observed:
        out: Observed = {i.id: [] for i in invoices}
        by_ref = {i.provider_ref: i for i in invoices if i.provider_ref}
        refs = list(by_ref)
        for start in range(0, len(refs), BATCH):
            chunk = refs[start:start + BATCH]
            try:
                # `count` defaults to 100 even when ids are named: ask for the whole chunk.
                result = await self.api.call("get_invoices", "getInvoices", {
                    "invoice_ids": ",".join(chunk), "count": len(chunk)})
                items = result.get("items") if isinstance(result, dict) else None
                if not isinstance(items, list):
                    raise ProviderError(self.name, "get_invoices", "answer without items")
            except ProviderError as exc:
                for ref in chunk:
                    out[by_ref[ref].id] = exc
                continue
            for item in items:
                ref = invoice_ref(item.get("invoice_id")) if isinstance(item, dict) else None
                ours = by_ref.get(ref) if ref else None
                if ours is None:
                    continue
                try:
                    out[ours.id] = self._payments(ours, item)
                except ProviderError as exc:
                    out[ours.id] = exc
        return out

    def _payments(self, invoice: Invoice, item: dict[str, Any]) -> list[ObservedPayment]:
        """The paid invoice's `amount` in USD, or nothing; an invoice that is not ours (other
        payload) or not in USD is an error, never a wrong amount settled."""
        if item.get("payload") not in (None, invoice.id):
            raise ProviderError(self.name, "get_invoices", "invoice payload is another invoice")
        if item.get("status") != "paid":
            return []
        if item.get("currency_type") != "fiat" or item.get("fiat") != "USD":
            raise ProviderError(self.name, "get_invoices", "paid invoice is not priced in USD")
        try:
            amount = Decimal(str(item["amount"]))
        except (KeyError, InvalidOperation) as exc:
            raise ProviderError(self.name, "get_invoices", "paid invoice without amount"
                                ) from exc
        if not amount.is_finite() or amount <= 0:
            raise ProviderError(self.name, "get_invoices", "paid invoice without amount")
        return [ObservedPayment(txid=f"{self.name}:{invoice.provider_ref}", amount_asset=amount,
                                confirmations=1, confirmed=True)]

    async def close(self) -> None:
        await self.api.close()
