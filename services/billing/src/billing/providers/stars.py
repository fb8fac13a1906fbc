"""The Telegram Stars provider: invoices in Stars (`XTR`), paid inside Telegram.

The Bot API is the payment provider here. A checkout is `createInvoiceLink` (currency `XTR`,
one price, the payload is our invoice id) priced by the provider itself: the plan's
`price_stars` (a promo code's discount taken off in proportion), or the USD amount ×
STARS_PER_USD, rounded up; the invoice records that many Stars as its `amount_asset` and the
link as its `payment_url`.

Telegram tells the bot, not billing, about a payment: the telegram service answers the
`pre_checkout_query` (asking billing whether the invoice is payable) and relays
`successful_payment` as `telegram.stars_payment.received.v1`, which billing stores once per
charge in `stars_payments`. `observe` reads that table, as the sandbox provider reads its chain,
so a Stars payment settles through the same step as any other, and the payment watch settles it
if the consumer's own settle did not run. A refund is `refundStarPayment` of each charge
(`CHARGE_ALREADY_REFUNDED` means the Stars are back already: a refund done).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import httpx

from billing.models import Invoice, Payment, Plan
from billing.providers.base import (
    Checkout,
    CheckoutRequest,
    Observed,
    ObservedPayment,
    ProviderError,
    observe_one,
)
from billing.rates import ASSET_QUANTUM
from billing.repository import StarsPaymentRepository
from runtime.db import Database

ASSET, NETWORK = "XTR", "TELEGRAM"
TITLE_MAX, DESCRIPTION_MAX = 32, 255
ALREADY_REFUNDED = "CHARGE_ALREADY_REFUNDED"


def stars_price(request: CheckoutRequest, stars_per_usd: Decimal) -> int:
    """The Stars an invoice costs: the plan's Stars price (less a discount, in proportion), or
    its USD amount × `stars_per_usd`; whole Stars, rounded up, at least one."""
    plan = request.plan
    if plan is not None and plan.price_stars and request.amount_usd == plan.price_usd:
        return plan.price_stars
    if plan is not None and plan.price_stars:
        return max(1, math.ceil(plan.price_stars * request.amount_usd / plan.price_usd))
    return max(1, math.ceil(request.amount_usd * stars_per_usd))


def invoice_text(plan: Plan | None, amount_usd: Decimal) -> tuple[str, str]:
    """The invoice's title (1-32 characters) and description (1-255), as Telegram shows them."""
    if plan is None:
        return "Balance top-up", f"Adds {amount_usd} USD to your balance."
    devices = "1 device" if plan.max_devices == 1 else f"up to {plan.max_devices} devices"
    return (plan.name[:TITLE_MAX],
            f"{plan.name}: {plan.duration_days} days of VPN, {devices}."[:DESCRIPTION_MAX])


class StarsProvider:
    name = "stars"
    title = "Telegram Stars"
    # The invoice is priced here, in Stars, from USD: no exchange rate of ours is needed.
    prices_invoices = True

    def __init__(self, db: Database, api_base: str, bot_token: str, stars_per_usd: Decimal,
                 timeout: float, transport: httpx.AsyncBaseTransport | None = None):
        self.db = db
        self.stars_per_usd = stars_per_usd
        self._base = f"{api_base.rstrip('/')}/bot{bot_token}/"
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=min(3.0, timeout)),
                                        transport=transport)

    def options(self) -> list[tuple[str, str]]:
        return [(ASSET, NETWORK)]

    async def _call(self, method: str, **params: Any) -> Any:
        """One Bot API call; its `result`, or ProviderError (never naming the URL: it holds
        the token)."""
        try:
            resp = await self.client.post(self._base + method, json=params)
        except httpx.HTTPError as exc:
            raise ProviderError(self.name, method, type(exc).__name__) from exc
        try:
            data = resp.json()
        except ValueError as exc:
            raise ProviderError(self.name, method, f"HTTP {resp.status_code}, not JSON") from exc
        if not isinstance(data, dict):
            raise ProviderError(self.name, method, "unexpected answer")
        if data.get("ok") is not True:
            description = str(data.get("description") or "")[:200]
            raise ProviderError(self.name, method,
                                f"{data.get('error_code', resp.status_code)}: {description}")
        return data.get("result")

    async def create_checkout(self, request: CheckoutRequest) -> Checkout:
        stars = stars_price(request, self.stars_per_usd)
        title, description = invoice_text(request.plan, request.amount_usd)
        link = await self._call("createInvoiceLink", title=title, description=description,
                                payload=request.invoice_id, provider_token="", currency=ASSET,
                                prices=[{"label": title, "amount": stars}])
        if not isinstance(link, str) or not link:
            raise ProviderError(self.name, "createInvoiceLink", "answer without a link")
        # In the invoice's precision, so the first answer reads as every later one.
        return Checkout(provider_ref=None, address=None, payment_url=link,
                        amount_asset=Decimal(stars).quantize(ASSET_QUANTUM))

    async def observe(self, invoice: Invoice) -> list[ObservedPayment]:
        return await observe_one(self, invoice)

    async def observe_many(self, invoices: Sequence[Invoice]) -> Observed:
        """The Stars payments the bot received for the invoices, in one read: each is final
        (Telegram took the Stars), so it is confirmed at once."""
        async with self.db.transaction() as s:
            found = await StarsPaymentRepository(s).for_invoices([i.id for i in invoices])
        return {i.id: [ObservedPayment(txid=p.telegram_payment_charge_id,
                                       amount_asset=Decimal(p.amount_stars), confirmations=1,
                                       confirmed=True, failed=p.currency != ASSET)
                       for p in found.get(i.id, [])]
                for i in invoices}

    async def refund(self, invoice: Invoice, payments: Sequence[Payment]) -> None:
        """Send the Stars of each payment back to its payer (`refundStarPayment`); raises
        ProviderError when one cannot be refunded."""
        async with self.db.transaction() as s:
            stored = await StarsPaymentRepository(s).by_charge([p.txid for p in payments])
        for payment in payments:
            row = stored.get(payment.txid)
            if row is None:
                raise ProviderError(self.name, "refundStarPayment",
                                    "no Stars payment is stored for this charge")
            try:
                await self._call("refundStarPayment", user_id=row.telegram_user_id,
                                 telegram_payment_charge_id=row.telegram_payment_charge_id)
            except ProviderError as exc:
                if ALREADY_REFUNDED not in str(exc):
                    raise

    async def close(self) -> None:
        await self.client.aclose()
