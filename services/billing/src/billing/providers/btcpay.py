"""The BTCPay Server provider (Greenfield API over httpx) and its webhooks.

A checkout is a BTCPay invoice priced in the asset at our locked rate; the customer pays on its
`checkoutLink`. `observe` reads the invoice and its payment methods; each BTCPay payment becomes
one observed payment (`Settled` = confirmed by BTCPay's speed policy, `Invalid` = failed).
Webhooks only tell us *which* invoice changed (`BTCPayWebhooks`): the handler then observes it
like the poller.
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
    observe_each,
    text_field,
)
from runtime.errors import ValidationFailed

SIGNATURE_HEADER = "BTCPay-Sig"


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def valid_signature(secret: str, body: bytes, header: str | None) -> bool:
    """`BTCPay-Sig: sha256=<hex HMAC-SHA256(secret, raw body)>`, compared in constant time."""
    if not secret or not header or not header.startswith("sha256="):
        return False
    expected = sign(secret, body).encode()
    return hmac.compare_digest(expected, header.strip().encode("utf-8", "replace"))


class BTCPayWebhooks(SignedWebhooks):
    """BTCPay's webhooks: signed with the store webhook's secret (`BTCPay-Sig`); the JSON body
    names the delivery (`deliveryId`), the event (`type`) and the BTCPay invoice (`invoiceId`)."""

    name = "btcpay"
    signature_header = SIGNATURE_HEADER
    signature_valid = staticmethod(valid_signature)

    def parse(self, body: bytes) -> WebhookDelivery:
        data = json_object(body)
        delivery_id = text_field(data, "deliveryId")
        if delivery_id is None:
            raise ValidationFailed("deliveryId is required", {"field": "deliveryId"})
        ref = text_field(data, "invoiceId")
        return WebhookDelivery(delivery_id=delivery_id, event_type=text_field(data, "type"),
                               provider_ref=ref)


class BTCPayProvider:
    name = "btcpay"
    title = "BTCPay"

    def __init__(self, base_url: str, api_key: str, store_id: str, timeout: float,
                 monitoring_minutes: int = 24 * 60,
                 transport: httpx.AsyncBaseTransport | None = None, concurrency: int = 8):
        self.store_id = store_id
        self.concurrency = concurrency  # invoices observed at once by `observe_many`
        self.monitoring_minutes = monitoring_minutes
        self.client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=httpx.Timeout(timeout, connect=min(3.0, timeout)),
            headers={"Authorization": f"token {api_key}", "Accept": "application/json"},
            transport=transport,
        )

    def options(self) -> list[tuple[str, str]]:
        return [("BTC", "BITCOIN")]

    def _invoices(self) -> str:
        return f"/api/v1/stores/{self.store_id}/invoices"

    async def _request(self, operation: str, method: str, path: str, **kwargs: Any) -> Any:
        try:
            resp = await self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ProviderError(self.name, operation, type(exc).__name__) from exc
        if resp.status_code >= 400:
            raise ProviderError(self.name, operation, f"HTTP {resp.status_code}: {resp.text[:200]}")
        try:
            return resp.json()
        except ValueError as exc:
            raise ProviderError(self.name, operation, "answer is not JSON") from exc

    async def create_checkout(self, request: CheckoutRequest) -> Checkout:
        seconds = (request.expires_at - datetime.now(UTC)).total_seconds()
        body = {
            "amount": format(request.amount_asset, "f"),
            "currency": request.asset,
            "metadata": {"orderId": request.invoice_id},
            "checkout": {
                "expirationMinutes": max(1, math.ceil(seconds / 60)),
                "monitoringMinutes": self.monitoring_minutes,
                "paymentTolerance": 0,
                "speedPolicy": "MediumSpeed",
            },
        }
        data = await self._request("create_invoice", "POST", self._invoices(), json=body)
        if not isinstance(data, dict) or not data.get("id"):
            raise ProviderError(self.name, "create_invoice", "answer without an invoice id")
        return Checkout(provider_ref=str(data["id"]), address=None,
                        payment_url=data.get("checkoutLink"))

    async def observe(self, invoice: Invoice) -> list[ObservedPayment]:
        ref = invoice.provider_ref
        if not ref:
            return []
        data = await self._request("get_invoice", "GET", f"{self._invoices()}/{ref}")
        methods = await self._request("get_payment_methods", "GET",
                                      f"{self._invoices()}/{ref}/payment-methods")
        try:
            out = [self._payment(p) for m in methods or [] if self._method_asset(m) == invoice.asset
                   for p in m.get("payments") or []]
        except (KeyError, TypeError, AttributeError, InvalidOperation) as exc:
            raise ProviderError(self.name, "get_payment_methods", "unexpected answer") from exc
        if (isinstance(data, dict) and data.get("status") == "Settled"
                and data.get("additionalStatus") == "Marked"
                and not any(o.confirmed for o in out)):
            # Marked settled by the merchant in BTCPay without an on-chain payment.
            out.append(ObservedPayment(txid=f"marked-{ref}", amount_asset=invoice.amount_asset,
                                       confirmations=0, confirmed=True))
        return out

    async def observe_many(self, invoices: Sequence[Invoice]) -> Observed:
        return await observe_each(self, invoices, self.concurrency)

    @staticmethod
    def _method_asset(method: dict) -> str:
        code = method.get("cryptoCode") or method.get("currency")
        if not code:
            code = str(method.get("paymentMethod") or method.get("paymentMethodId") or "")
            code = code.split("-")[0]
        return str(code).upper()

    @staticmethod
    def _payment(p: dict) -> ObservedPayment:
        status = p.get("status")
        return ObservedPayment(txid=str(p["id"]), amount_asset=Decimal(str(p["value"])),
                               confirmations=1 if status == "Settled" else 0,
                               confirmed=status == "Settled", failed=status == "Invalid")

    async def close(self) -> None:
        await self.client.aclose()
