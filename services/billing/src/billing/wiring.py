"""Builds the configured adapters and services once per process (API and worker alike)."""

from __future__ import annotations

from dataclasses import dataclass

from billing.config import Settings
from billing.providers import build_provider
from billing.rates import FixedRateSource
from billing.service import BillingService
from billing.watch import PaymentWatcher
from billing.webhooks import WebhookService
from runtime.db import Database


@dataclass
class Components:
    billing: BillingService
    watcher: PaymentWatcher
    webhooks: WebhookService

    async def close(self) -> None:
        await self.billing.provider.close()


def build_components(settings: Settings, db: Database) -> Components:
    billing = BillingService(settings, build_provider(settings, db),
                             FixedRateSource(settings.fixed_rates_usd))
    watcher = PaymentWatcher(db, billing, settings)
    return Components(billing, watcher, WebhookService(db, watcher, settings.btcpay_webhook_secret))
