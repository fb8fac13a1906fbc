"""`payment_watch` and `invoice_expiry`: the polling side of billing.

`watch_one` asks the provider what was paid to one invoice (no lock held during the call), then
row-locks the invoice and runs the shared settle step (`BillingService.reconcile`). Webhooks call
the same `watch_one`, so a lost webhook is repaired by the next poll and nothing is applied twice.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from billing.config import Settings
from billing.metrics import PROVIDER_ERRORS
from billing.providers.base import ProviderError
from billing.repository import InvoiceRepository
from billing.service import OPEN, BillingService, utcnow
from runtime.db import Database
from runtime.logging import get_logger

log = get_logger(__name__)

WATCH_BATCH = 1000


class PaymentWatcher:
    def __init__(self, db: Database, billing: BillingService, settings: Settings):
        self.db = db
        self.billing = billing
        self.provider = billing.provider
        self.settings = settings

    async def watch_one(self, invoice_id: str, now: datetime | None = None) -> str:
        """Observe one invoice at its provider and settle what changed; returns its status."""
        async with self.db.transaction() as s:
            invoice = await InvoiceRepository(s).get(invoice_id)
        if invoice is None:
            return "missing"
        try:
            observed = await self.provider.observe(invoice)
        except ProviderError as exc:
            PROVIDER_ERRORS.labels(exc.provider, exc.operation).inc()
            log.warning("provider_observe_failed", invoice_id=invoice_id, error=str(exc)[:300])
            return "provider_error"
        at = now or utcnow()
        if not observed and invoice.status in OPEN and at < invoice.rate_locked_until:
            return invoice.status
        async with self.db.transaction() as s:
            invoice = await InvoiceRepository(s).get(invoice_id, for_update=True)
            await self.billing.reconcile(s, invoice, observed, now or utcnow())
            return invoice.status

    async def _watch_all(self, ids: list[str]) -> dict[str, int]:
        gate = asyncio.Semaphore(self.settings.watch_concurrency)
        outcomes: dict[str, int] = {}

        async def one(invoice_id: str) -> None:
            async with gate:
                try:
                    status = await self.watch_one(invoice_id)
                except Exception as exc:  # one bad invoice must not stop the others
                    log.exception("watch_failed", invoice_id=invoice_id, error=str(exc)[:300])
                    status = "error"
            outcomes[status] = outcomes.get(status, 0) + 1

        await asyncio.gather(*(one(i) for i in ids))
        return outcomes

    async def payment_watch(self) -> dict[str, int]:
        """Every open invoice, every invoice with a payment still confirming, recent closed ones."""
        late_since = utcnow() - timedelta(hours=self.settings.late_payment_watch_hours)
        async with self.db.transaction() as s:
            ids = await InvoiceRepository(s).ids_to_watch(self.provider.name, late_since,
                                                          WATCH_BATCH)
        return await self._watch_all(ids)

    async def invoice_expiry(self) -> dict[str, int]:
        """Open invoices whose rate lock has passed: a last look at the provider, then expire."""
        async with self.db.transaction() as s:
            ids = await InvoiceRepository(s).ids_past_lock(self.provider.name, utcnow(),
                                                           WATCH_BATCH)
        return await self._watch_all(ids)
