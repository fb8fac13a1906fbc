"""The payment-provider interface: open a checkout for an invoice, report what was paid to it,
and (for a provider that sends webhooks) verify a delivery and say what it is about."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

import orjson

from billing.models import Invoice
from runtime.errors import ValidationFailed


class ProviderError(Exception):
    """A provider call failed (network, timeout, unexpected answer); safe to retry later."""

    def __init__(self, provider: str, operation: str, message: str):
        super().__init__(f"{provider} {operation}: {message}")
        self.provider = provider
        self.operation = operation


@dataclass(frozen=True)
class CheckoutRequest:
    invoice_id: str
    amount_usd: Decimal
    asset: str
    network: str
    amount_asset: Decimal
    expires_at: datetime


@dataclass(frozen=True)
class Checkout:
    provider_ref: str | None
    address: str | None
    payment_url: str | None


@dataclass(frozen=True)
class ObservedPayment:
    """One payment as the provider or chain sees it now."""

    txid: str
    amount_asset: Decimal
    confirmations: int
    confirmed: bool
    failed: bool = False


class PaymentProvider(Protocol):
    name: str

    def options(self) -> list[tuple[str, str]]:
        """The (asset, network) pairs this provider accepts."""
        ...

    async def create_checkout(self, request: CheckoutRequest) -> Checkout: ...

    async def observe(self, invoice: Invoice) -> list[ObservedPayment]:
        """Every payment made to the invoice so far (raises ProviderError when unreachable)."""
        ...

    async def observe_many(self, invoices: Sequence[Invoice]
                           ) -> dict[str, list[ObservedPayment] | ProviderError]:
        """`observe` for a batch (the payment watch): per invoice its payments or the error."""
        ...

    async def close(self) -> None: ...


Observed = dict[str, list[ObservedPayment] | ProviderError]

# A delivery's HTTP headers as the request carried them; names are case-insensitive.
Headers = Mapping[str, str]


@dataclass(frozen=True)
class WebhookDelivery:
    """What a webhook delivery says: its id (a redelivery repeats it), its event type, and the
    provider's reference of the checkout it is about (None: it names none)."""

    delivery_id: str
    event_type: str | None
    provider_ref: str | None


class WebhookSource(Protocol):
    """A provider's webhooks, accepted at `/internal/webhooks/{name}`."""

    name: str

    def verify(self, body: bytes, headers: Headers) -> bool:
        """True when the delivery is authentic: checked on the raw body, in constant time."""
        ...

    def parse(self, body: bytes) -> WebhookDelivery:
        """The delivery's identifiers (raises ValidationFailed when it does not carry them)."""
        ...


def json_object(body: bytes) -> dict[str, Any]:
    """A webhook body that must be a JSON object (else ValidationFailed)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValidationFailed("Malformed JSON") from exc
    if not isinstance(data, dict):
        raise ValidationFailed("The body must be a JSON object")
    return data


def text_field(data: dict[str, Any], name: str) -> str | None:
    """A short text field of a delivery, or None; text PostgreSQL cannot store is refused."""
    value = data.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > 200 or "\x00" in value:
        raise ValidationFailed(f"{name} is not a valid identifier", {"field": name})
    return value


async def observe_each(provider: PaymentProvider, invoices: Sequence[Invoice],
                       concurrency: int) -> Observed:
    """`observe_many` for a provider with no batch call: one `observe` per invoice, bounded."""
    gate = asyncio.Semaphore(concurrency)
    out: Observed = {}

    async def one(invoice: Invoice) -> None:
        async with gate:
            try:
                out[invoice.id] = await provider.observe(invoice)
            except ProviderError as exc:
                out[invoice.id] = exc

    await asyncio.gather(*(one(i) for i in invoices))
    return out
