"""The payment-provider interface: open a checkout for an invoice, report what was paid to it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from billing.models import Invoice


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
