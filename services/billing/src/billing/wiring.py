"""Builds the configured adapters and services once per process (API and worker alike).

The payment providers are registered here by name: `PROVIDERS` holds how to build each one
`PAYMENT_PROVIDER` may name, `WEBHOOK_SOURCES` the providers whose webhooks billing accepts (at
`/internal/webhooks/{name}`, whichever provider is active: a delivery about another provider's
invoice is stored and answered with the outcome `provider_not_active`). A new provider is its
module under `billing.providers` plus its lines here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from billing.config import Settings
from billing.providers.base import PaymentProvider, WebhookSource
from billing.providers.btcpay import BTCPayProvider, BTCPayWebhooks
from billing.providers.sandbox import SandboxProvider
from billing.rates import FixedRateSource
from billing.renewals import RenewalService
from billing.service import BillingService
from billing.watch import PaymentWatcher
from billing.webhooks import WebhookService
from runtime.db import Database
from runtime.faults import sandbox_faults


def _sandbox(settings: Settings, db: Database) -> PaymentProvider:
    return SandboxProvider(db, settings.sandbox_confirmations, sandbox_faults(settings))


def _btcpay(settings: Settings, db: Database) -> PaymentProvider:
    return BTCPayProvider(settings.btcpay_url, settings.btcpay_api_key, settings.btcpay_store_id,
                          settings.provider_timeout_seconds,
                          monitoring_minutes=settings.late_payment_watch_hours * 60,
                          concurrency=settings.watch_concurrency)


PROVIDERS: dict[str, Callable[[Settings, Database], PaymentProvider]] = {
    "sandbox": _sandbox,
    "btcpay": _btcpay,
}

WEBHOOK_SOURCES: tuple[Callable[[Settings], WebhookSource], ...] = (
    lambda settings: BTCPayWebhooks(settings.btcpay_webhook_secret),
)


def build_provider(settings: Settings, db: Database) -> PaymentProvider:
    build = PROVIDERS.get(settings.payment_provider)
    if build is None:
        raise ValueError(f"unknown PAYMENT_PROVIDER {settings.payment_provider!r}")
    return build(settings, db)


def build_webhook_sources(settings: Settings) -> dict[str, WebhookSource]:
    """The webhook sources by the name each declares (the name in the webhook's URL)."""
    sources = [build(settings) for build in WEBHOOK_SOURCES]
    return {source.name: source for source in sources}


@dataclass
class Components:
    billing: BillingService
    watcher: PaymentWatcher
    webhooks: WebhookService
    renewals: RenewalService

    async def close(self) -> None:
        await self.billing.provider.close()


def build_components(settings: Settings, db: Database) -> Components:
    billing = BillingService(settings, build_provider(settings, db),
                             FixedRateSource(settings.fixed_rates_usd))
    watcher = PaymentWatcher(db, billing, settings)
    webhooks = WebhookService(db, watcher, build_webhook_sources(settings))
    return Components(billing, watcher, webhooks, RenewalService(billing))
