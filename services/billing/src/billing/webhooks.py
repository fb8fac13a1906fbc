"""Provider webhooks: the provider named in the URL verifies the delivery on the raw body and
its headers and says what it is about; each delivery is stored once for audit, then the
referenced invoice is observed and settled by the same step `payment_watch` uses."""

from __future__ import annotations

from collections.abc import Mapping

from billing.metrics import WEBHOOK_SIGNATURE_FAILURES
from billing.providers.base import Headers, WebhookSource
from billing.repository import InvoiceRepository, ProviderEventRepository
from billing.service import utcnow
from billing.watch import PaymentWatcher
from runtime.db import Database
from runtime.errors import NotFound, Unauthenticated
from runtime.logging import get_logger

log = get_logger(__name__)


class WebhookService:
    def __init__(self, db: Database, watcher: PaymentWatcher,
                 sources: Mapping[str, WebhookSource]):
        self.db = db
        self.watcher = watcher
        self.sources = sources

    async def receive(self, provider: str, raw: bytes, headers: Headers) -> str:
        """Handle one delivery; returns its outcome (also stored with it). Unknown provider:
        NotFound; not authentic: Unauthenticated, nothing stored; a body that does not name
        a delivery: ValidationFailed."""
        source = self.sources.get(provider)
        if source is None:
            raise NotFound("Unknown payment provider")
        if not source.verify(raw, headers):
            WEBHOOK_SIGNATURE_FAILURES.labels(provider).inc()
            raise Unauthenticated("Invalid webhook signature")
        delivery = source.parse(raw)
        ref, event_type = delivery.provider_ref, delivery.event_type
        async with self.db.transaction() as s:
            repo = ProviderEventRepository(s)
            event_id = await repo.insert_once({
                "provider": provider, "delivery_id": delivery.delivery_id,
                "event_type": event_type, "provider_ref": ref,
                "raw_body": raw.decode("utf-8", "replace"), "received_at": utcnow()})
            if event_id is None:
                stored = await repo.get(provider, delivery.delivery_id)
                if stored is None or stored.processed_at is not None:
                    return "duplicate"
                event_id = stored.id
            invoice = await InvoiceRepository(s).by_provider_ref(provider, ref) if ref else None
        if invoice is None:
            outcome = "unknown_invoice"
        elif provider not in self.watcher.providers:
            outcome = "provider_not_active"
        else:
            outcome = f"invoice:{await self.watcher.watch_one(invoice.id)}"
        async with self.db.transaction() as s:
            await ProviderEventRepository(s).mark_processed(event_id, outcome, utcnow())
        log.info("webhook_processed", provider=provider, event_type=event_type, outcome=outcome)
        return outcome
