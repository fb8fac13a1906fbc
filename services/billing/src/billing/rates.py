"""Exchange-rate sources: the price of one unit of an asset in USD, used to lock an invoice.

`fixed` reads FIXED_RATES_USD. `cryptopay` reads Crypto Pay's `getExchangeRates` (the valid
`<asset> → USD` rates), keeps them at most RATES_MAX_AGE_SECONDS, refreshes them in the
background once half that age has passed, and refuses a price it cannot base on a rate that
fresh (503 `SERVICE_UNAVAILABLE`, no invoice): never a wrong price. USD itself is always 1.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from decimal import ROUND_UP, Decimal, InvalidOperation
from typing import Any, Protocol

from billing.metrics import PROVIDER_ERRORS
from billing.providers.base import ProviderError
from billing.providers.cryptopay import CryptoPayClient
from runtime.errors import ServiceUnavailable, ValidationFailed
from runtime.logging import get_logger

log = get_logger(__name__)

ASSET_QUANTUM = Decimal("0.00000001")
USD = "USD"


class RateSource(Protocol):
    name: str

    async def usd_per_unit(self, asset: str) -> Decimal: ...

    async def close(self) -> None: ...


class FixedRateSource:
    """Fixed rates from settings: the sandbox default, deterministic for tests and demos."""

    name = "fixed"

    def __init__(self, rates: dict[str, Decimal]):
        self.rates = {k.upper(): Decimal(v) for k, v in rates.items()}

    async def usd_per_unit(self, asset: str) -> Decimal:
        if asset.upper() == USD:  # an invoice priced in USD by its provider
            return Decimal(1)
        rate = self.rates.get(asset.upper())
        if rate is None or rate <= 0:
            raise ValidationFailed("No exchange rate for this asset", {"asset": asset})
        return rate

    async def close(self) -> None:
        return None


def usd_rates(items: Any) -> dict[str, Decimal]:
    """`{asset: USD per unit}` from a getExchangeRates result: only `is_valid` rates of a
    source to USD, positive and finite; anything else is left out."""
    if not isinstance(items, list):
        raise ValueError("getExchangeRates did not answer a list")
    out: dict[str, Decimal] = {}
    for item in items:
        if not isinstance(item, dict) or item.get("is_valid") is not True \
                or item.get("target") != USD or not isinstance(item.get("source"), str):
            continue
        try:
            rate = Decimal(str(item.get("rate")))
        except InvalidOperation:
            continue
        if rate.is_finite() and rate > 0:
            out[item["source"].upper()] = rate
    return out


class CryptoPayRateSource:
    """Crypto Pay's rates, cached: fresh (younger than `max_age`) or refused."""

    name = "cryptopay"

    def __init__(self, client: CryptoPayClient, max_age: float, *, retry_seconds: float = 1.0,
                 clock: Callable[[], float] = time.monotonic):
        self.client = client
        self.max_age = max_age
        self.retry_seconds = retry_seconds  # a failed refresh is not retried sooner
        self.clock = clock
        self.rates: dict[str, Decimal] = {}
        self.fetched_at: float | None = None
        self.failed_at: float | None = None
        self._lock = asyncio.Lock()
        self._reads = 0  # reads finished, failed or not
        self._background: asyncio.Task | None = None

    def age(self) -> float | None:
        return None if self.fetched_at is None else self.clock() - self.fetched_at

    async def refresh(self) -> bool:
        """Read the rates once; callers arriving while a read runs share its outcome (one
        call at a time, none repeated). False when the source failed."""
        seen = self._reads
        async with self._lock:
            if self._reads != seen:  # another caller's read finished meanwhile
                return self.failed_at is None
            try:
                rates = usd_rates(await self.client.call(
                    "get_exchange_rates", "getExchangeRates"))
            except (ProviderError, ValueError) as exc:
                self._reads += 1
                self.failed_at = self.clock()
                PROVIDER_ERRORS.labels(self.name, "get_exchange_rates").inc()
                log.warning("rates_refresh_failed", source=self.name, error=str(exc)[:300],
                            age_seconds=self.age())
                return False
            self._reads += 1
            self.rates, self.fetched_at, self.failed_at = rates, self.clock(), None
            return True

    def _may_retry(self) -> bool:
        return self.failed_at is None or self.clock() - self.failed_at >= self.retry_seconds

    async def usd_per_unit(self, asset: str) -> Decimal:
        asset = asset.upper()
        if asset == USD:
            return Decimal(1)
        age = self.age()
        if (age is None or age >= self.max_age) and self._may_retry():
            await self.refresh()
        elif age is not None and age >= self.max_age / 2 and self._may_retry():
            self._refresh_in_background()
        age = self.age()
        if age is None or age >= self.max_age:
            raise ServiceUnavailable("Exchange rates are unavailable", {"asset": asset})
        rate = self.rates.get(asset)
        if rate is None:
            raise ServiceUnavailable("No exchange rate for this asset", {"asset": asset})
        return rate

    def _refresh_in_background(self) -> None:
        if self._background is None or self._background.done():
            self._background = asyncio.create_task(self.refresh())

    async def close(self) -> None:
        if self._background is not None and not self._background.done():
            self._background.cancel()
        await self.client.close()


def asset_amount(amount_usd: Decimal, usd_per_unit: Decimal) -> Decimal:
    """USD converted to the asset, rounded up to 8 decimals so the merchant is never short."""
    return (amount_usd / usd_per_unit).quantize(ASSET_QUANTUM, rounding=ROUND_UP)
