"""Exchange-rate sources: the price of one unit of an asset in USD, used to lock an invoice."""

from __future__ import annotations

from decimal import ROUND_UP, Decimal
from typing import Protocol

from runtime.errors import ValidationFailed

ASSET_QUANTUM = Decimal("0.00000001")
USD = "USD"


class RateSource(Protocol):
    name: str

    async def usd_per_unit(self, asset: str) -> Decimal: ...


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


def asset_amount(amount_usd: Decimal, usd_per_unit: Decimal) -> Decimal:
    """USD converted to the asset, rounded up to 8 decimals so the merchant is never short."""
    return (amount_usd / usd_per_unit).quantize(ASSET_QUANTUM, rounding=ROUND_UP)
