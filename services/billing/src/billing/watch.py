"""`payment_watch` and `invoice_expiry`: the polling side of billing.

`watch_one` asks the provider what was paid to one invoice (no lock held during the call), then
row-locks the invoice and runs the shared settle step (`BillingService.reconcile`). Webhooks call
the same `watch_one`, so a lost webhook is repaired by the next poll and nothing is applied twice.
The scheduled jobs watch in batches: one read of the invoices, one `observe_many` at the provider
(the sandbox reads its chain once), then the same settle step per invoice.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from billing.config import Settings
from billing.metrics import PROVIDER_ERRORS
from billing.models import Invoice
from billing.providers.base import ObservedPayment, PaymentProvider, ProviderError
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
        self.providers = billing.providers
        self.settings = settings
        # where the payment watch's page of recently closed invoices goes on, per provider and
        # status (a restart starts again from the oldest: each is seen once more, no harm)
        self._late_after: dict[tuple[str, str], tuple[datetime, str] | None] = {}

    async def watch_one(self, invoice_id: str, now: datetime | None = None) -> str:
        """Observe one invoice at its provider and settle what changed; returns its status
        (`provider_not_active` when its provider is not enabled: nothing is asked)."""
        async with self.db.transaction() as s:
            invoice = await InvoiceRepository(s).get(invoice_id)
        if invoice is None:
            return "missing"
        provider = self.providers.get(invoice.provider)
        if provider is None:
            return "provider_not_active"
        try:
            observed = await provider.observe(invoice)
        except ProviderError as exc:
            return self._provider_failed(invoice_id, exc)
        return await self._settle(invoice, observed, now)

    def _provider_failed(self, invoice_id: str, exc: ProviderError) -> str:
        PROVIDER_ERRORS.labels(exc.provider, exc.operation).inc()
        log.warning("provider_observe_failed", invoice_id=invoice_id, error=str(exc)[:300])
        return "provider_error"

    async def _settle(self, invoice: Invoice, observed: list[ObservedPayment],
                      now: datetime | None = None) -> str:
        """Row-lock the invoice and reconcile, unless nothing could change (no payment seen,
        and the invoice closed or its rate lock still running): then no transaction at all.
        Times are taken here (`now` only in tests), so `paid_at` is when this invoice was
        settled."""
        at = now or utcnow()
        # nothing seen changes nothing, except an open invoice's rate lock running out
        if not observed and (invoice.status not in OPEN or at < invoice.rate_locked_until):
            return invoice.status
        async with self.db.transaction() as s:
            locked = await InvoiceRepository(s).get(invoice.id, for_update=True)
            await self.billing.reconcile(s, locked, observed, at)
            return locked.status

    async def _watch_all(self, provider: PaymentProvider, ids: list[str]) -> dict[str, int]:
        """One read of the invoices, one batch observation, then a locked reconcile for each
        invoice that may have changed (at most `watch_concurrency` at once)."""
        if not ids:
            return {}
        async with self.db.transaction() as s:
            invoices = await InvoiceRepository(s).get_many(ids)
        observed = await provider.observe_many(invoices)
        gate = asyncio.Semaphore(self.settings.watch_concurrency)
        outcomes: dict[str, int] = {}

        async def one(invoice: Invoice) -> None:
            async with gate:
                seen = observed.get(invoice.id, [])
                try:
                    if isinstance(seen, ProviderError):
                        status = self._provider_failed(invoice.id, seen)
                    else:
                        status = await self._settle(invoice, seen)
                except Exception as exc:  # one bad invoice must not stop the others
                    log.exception("watch_failed", invoice_id=invoice.id, error=str(exc)[:300])
                    status = "error"
            outcomes[status] = outcomes.get(status, 0) + 1

        await asyncio.gather(*(one(i) for i in invoices))
        return outcomes

    async def _each_provider(self, find) -> dict[str, int]:
        """`_watch_all` for every enabled provider, one after the other; the outcomes summed."""
        total: dict[str, int] = {}
        for provider in self.providers:
            async with self.db.transaction() as s:
                ids = await find(InvoiceRepository(s), provider.name)
            _add(total, await self._watch_all(provider, ids))
        return total

    async def payment_watch(self) -> dict[str, int]:
        """Of every enabled provider: every open invoice and every one with a payment still
        confirming, each run (in pages of `WATCH_BATCH` until none is left: they are being
        paid now); then the next page of those expired and of those canceled within
        `LATE_PAYMENT_WATCH_HOURS` (a late payment is recorded, never lost), each run going on
        where the last one stopped, so all of them are seen in turn however many there are and
        they never crowd out the open ones."""
        late_since = utcnow() - timedelta(hours=self.settings.late_payment_watch_hours)
        total: dict[str, int] = {}
        for provider in self.providers:
            after: tuple[datetime, str] | None = None
            while True:
                async with self.db.transaction() as s:
                    page = await InvoiceRepository(s).ids_to_watch(provider.name, after,
                                                                   WATCH_BATCH)
                _add(total, await self._watch_all(provider, [i for _, i in page]))
                if len(page) < WATCH_BATCH:
                    break
                after = page[-1]
            for status in ("EXPIRED", "CANCELED"):
                key = (provider.name, status)
                async with self.db.transaction() as s:
                    page = await InvoiceRepository(s).ids_closed_lately(
                        provider.name, status, late_since, self._late_after.get(key),
                        WATCH_BATCH)
                # a short page was the last: the next run starts again from the oldest
                self._late_after[key] = page[-1] if len(page) == WATCH_BATCH else None
                _add(total, await self._watch_all(provider, [i for _, i in page]))
        return total

    async def invoice_expiry(self) -> dict[str, int]:
        """Open invoices whose rate lock has passed: a last look at the provider, then expire."""
        now = utcnow()
        return await self._each_provider(
            lambda repo, name: repo.ids_past_lock(name, now, WATCH_BATCH))


def _add(total: dict[str, int], outcomes: dict[str, int]) -> None:
    for status, n in outcomes.items():
        total[status] = total.get(status, 0) + n
