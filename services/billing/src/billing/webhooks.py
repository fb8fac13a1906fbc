"""Provider webhooks: signature check on the raw body, each delivery stored once for audit, then
the referenced invoice is observed and settled by the same step `payment_watch` uses."""

from __future__ import annotations

import orjson

from billing.metrics import WEBHOOK_SIGNATURE_FAILURES
from billing.providers.btcpay import valid_signature
from billing.repository import InvoiceRepository, ProviderEventRepository
from billing.service import utcnow
from billing.watch import PaymentWatcher
from runtime.db import Database
from runtime.errors import NotFound, Unauthenticated, ValidationFailed
from runtime.logging import get_logger

log = get_logger(__name__)

PROVIDERS = ("btcpay",)


def _field(data: dict, name: str) -> str | None:
    """A short text field of the delivery, or None; text PostgreSQL cannot store is refused."""
    value = data.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > 200 or "\x00" in value:
        raise ValidationFailed(f"{name} is not a valid identifier", {"field": name})
    return value


class WebhookService:
    def __init__(self, db: Database, watcher: PaymentWatcher, btcpay_secret: str):
        self.db = db
        self.watcher = watcher
        self.btcpay_secret = btcpay_secret

    async def receive(self, provider: str, raw: bytes, signature: str | None) -> str:
        if provider not in PROVIDERS:
            raise NotFound("Unknown payment provider")
        if not valid_signature(self.btcpay_secret, raw, signature):
            WEBHOOK_SIGNATURE_FAILURES.labels(provider).inc()
            raise Unauthenticated("Invalid webhook signature")
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ValidationFailed("Malformed JSON") from exc
        if not isinstance(data, dict):
            raise ValidationFailed("The body must be a JSON object")
        delivery_id = _field(data, "deliveryId")
        if delivery_id is None:
            raise ValidationFailed("deliveryId is required", {"field": "deliveryId"})
        ref, event_type = _field(data, "invoiceId"), _field(data, "type")
        async with self.db.transaction() as s:
            repo = ProviderEventRepository(s)
            event_id = await repo.insert_once({
                "provider": provider, "delivery_id": delivery_id, "event_type": event_type,
                "provider_ref": ref, "raw_body": raw.decode("utf-8", "replace"),
                "received_at": utcnow()})
            if event_id is None:
                stored = await repo.get(provider, delivery_id)
                if stored is None or stored.processed_at is not None:
                    return "duplicate"
                event_id = stored.id
            invoice = await InvoiceRepository(s).by_provider_ref(provider, ref) if ref else None
        if invoice is None:
            outcome = "unknown_invoice"
        elif self.watcher.provider.name != provider:
            outcome = "provider_not_active"
        else:
            outcome = f"invoice:{await self.watcher.watch_one(invoice.id)}"
        async with self.db.transaction() as s:
            await ProviderEventRepository(s).mark_processed(event_id, outcome, utcnow())
        log.info("webhook_processed", provider=provider, event_type=event_type, outcome=outcome)
        return outcome
