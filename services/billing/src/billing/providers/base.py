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

from billing.models import Invoice, Payment, Plan
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
    # At our locked rate; 0 for a provider that sets `prices_invoices = True` (it always
    # prices the invoice itself, in USD, and answers `Checkout.amount_asset`).
    amount_asset: Decimal
    expires_at: datetime
    # The plan bought (None: a top-up), for a provider that prices or names it itself.
    plan: Plan | None = None


@dataclass(frozen=True)
class Checkout:
    provider_ref: str | None
    address: str | None
    payment_url: str | None
    # What the provider itself asks for, when it prices the invoice (its own rate): the
    # invoice then records this amount of `asset` instead of the one at our locked rate.
    amount_asset: Decimal | None = None


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
    # How the customer knows the method ("Crypto Bot", "BTCPay"), shown next to each option.
    title: str

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


class RefundingProvider(Protocol):
    """A provider that sends a refund back itself. Optional: `BillingService.refund` calls
    `refund` (with the invoice's settled payments) only on a provider that has it."""

    async def refund(self, invoice: Invoice, payments: Sequence[Payment]) -> None:
        """Return the payments to the payer (raises ProviderError when it cannot)."""
        ...


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


class SignedWebhooks:
    """A `WebhookSource` whose deliveries carry, in one header, a signature of the raw body made
    with one shared secret: a subclass names its provider, the header, its check of the
    signature (`signature_valid`) and its `parse`."""

    name: str
    signature_header: str

    def __init__(self, secret: str):
        self.secret = secret

    @staticmethod
    def signature_valid(secret: str, body: bytes, header: str | None) -> bool:
        raise NotImplementedError

    def verify(self, body: bytes, headers: Headers) -> bool:
        return self.signature_valid(self.secret, body, headers.get(self.signature_header))


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


async def observe_one(provider: PaymentProvider, invoice: Invoice) -> list[ObservedPayment]:
    """`observe` for a provider whose one read is its batch call: a batch of one (its error
    raised)."""
    result = (await provider.observe_many([invoice])).get(invoice.id, [])
    if isinstance(result, ProviderError):
        raise result
    return result


class Providers:
    """The enabled payment providers, in `PAYMENT_PROVIDERS` order: what the customer may pay
    with, and which adapter an invoice's `provider` names."""

    def __init__(self, providers: Sequence[PaymentProvider]):
        if not providers:
            raise ValueError("at least one payment provider must be enabled")
        self._by_name = {p.name: p for p in providers}

    def __iter__(self):
        return iter(self._by_name.values())

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def get(self, name: str) -> PaymentProvider | None:
        return self._by_name.get(name)

    @property
    def first(self) -> PaymentProvider:
        return next(iter(self._by_name.values()))

    def options(self) -> list[tuple[str, str, str]]:
        """(provider, asset, network) of every enabled provider, in their order."""
        return [(p.name, asset, network) for p in self for asset, network in p.options()]

    def choose(self, asset: str, network: str, provider: str | None = None) -> PaymentProvider:
        """The provider an invoice in `asset`/`network` goes to: the one named, or the first
        that accepts the pair (clients from before several providers name none). Refused:
        ValidationFailed (400), nothing stored."""
        candidates = [self._by_name[provider]] if provider in self._by_name else (
            [] if provider is not None else list(self))
        for p in candidates:
            if (asset, network) in p.options():
                return p
        details = {"asset": asset, "network": network}
        if provider is not None:
            details["provider"] = provider
        raise ValidationFailed("This payment method is not accepted", details)

    async def close(self) -> None:
        for p in self:
            await p.close()
