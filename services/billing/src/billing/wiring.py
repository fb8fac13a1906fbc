"""Builds the configured adapters and services once per process (API and worker alike).

The payment providers are registered here by name: `PROVIDERS` holds how to build each one
`PAYMENT_PROVIDERS` may name and, for one that sends webhooks, its webhook source (accepted at
`/internal/webhooks/{name}` whether or not it is enabled: a delivery about an invoice of a
provider that is not enabled is stored and answered `provider_not_active`). A new provider is
its module under `billing.providers` plus its line here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from billing.config import Settings
from billing.providers.base import PaymentProvider, Providers, WebhookSource
from billing.providers.btcpay import BTCPayProvider, BTCPayWebhooks
from billing.providers.cryptopay import CryptoPayClient, CryptoPayProvider, CryptoPayWebhooks
from billing.providers.nowpayments import NowPaymentsProvider, NowPaymentsWebhooks
from billing.providers.sandbox import SandboxProvider
from billing.providers.stars import StarsProvider
from billing.rates import CryptoPayRateSource, FixedRateSource, RateSource
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


def _cryptopay(settings: Settings, db: Database) -> PaymentProvider:
    return CryptoPayProvider(settings.cryptopay_api_base, settings.cryptopay_token,
                             settings.provider_timeout_seconds,
                             settings.cryptopay_accepted_assets)


def _stars(settings: Settings, db: Database) -> PaymentProvider:
    return StarsProvider(db, settings.telegram_api_base, settings.telegram_bot_token,
                         settings.stars_per_usd, settings.provider_timeout_seconds)


def _nowpayments(settings: Settings, db: Database) -> PaymentProvider:
    return NowPaymentsProvider(settings.nowpayments_api_base, settings.nowpayments_api_key,
                               settings.nowpayments_pay_currencies, settings.nowpayments_ipn_url,
                               settings.provider_timeout_seconds,
                               concurrency=settings.watch_concurrency)


@dataclass(frozen=True)
class Registration:
    """How to build a provider, and its webhooks when it sends any."""

    build: Callable[[Settings, Database], PaymentProvider]
    webhooks: Callable[[Settings], WebhookSource] | None = None


PROVIDERS: dict[str, Registration] = {
    "sandbox": Registration(_sandbox),
    "btcpay": Registration(_btcpay, lambda s: BTCPayWebhooks(s.btcpay_webhook_secret)),
    "nowpayments": Registration(_nowpayments,
                                lambda s: NowPaymentsWebhooks(s.nowpayments_ipn_secret)),
    # Stars payments arrive through the Telegram webhook, relayed as an event (no webhook here).
    "stars": Registration(_stars),
    "cryptopay": Registration(_cryptopay, lambda s: CryptoPayWebhooks(s.cryptopay_token)),
}


def build_providers(settings: Settings, db: Database) -> Providers:
    """The providers PAYMENT_PROVIDERS enables, in its order (an unknown name: ValueError)."""
    unknown = [n for n in settings.payment_providers if n not in PROVIDERS]
    if unknown:
        raise ValueError(f"unknown payment provider(s) {', '.join(unknown)}; known: "
                         f"{', '.join(PROVIDERS)}")
    return Providers([PROVIDERS[n].build(settings, db) for n in settings.payment_providers])


def build_webhook_sources(settings: Settings) -> dict[str, WebhookSource]:
    """Every registered provider's webhooks, by the name in their URL: a delivery about a
    provider that is not enabled is stored and answered `provider_not_active`."""
    sources = [r.webhooks(settings) for r in PROVIDERS.values() if r.webhooks is not None]
    return {source.name: source for source in sources}


@dataclass
class Components:
    billing: BillingService
    watcher: PaymentWatcher
    webhooks: WebhookService
    renewals: RenewalService

    async def close(self) -> None:
        await self.billing.providers.close()
        await self.billing.rates.close()


def build_rates(settings: Settings) -> RateSource:
    """RATE_SOURCE: the fixed rates, or Crypto Pay's live ones."""
    if settings.rate_source == "cryptopay":
        return CryptoPayRateSource(
            CryptoPayClient(settings.cryptopay_api_base, settings.cryptopay_token,
                            settings.provider_timeout_seconds),
            settings.rates_max_age_seconds)
    return FixedRateSource(settings.fixed_rates_usd)


def build_components(settings: Settings, db: Database) -> Components:
    billing = BillingService(settings, build_providers(settings, db), build_rates(settings))
    watcher = PaymentWatcher(db, billing, settings)
    webhooks = WebhookService(db, watcher, build_webhook_sources(settings))
    return Components(billing, watcher, webhooks, RenewalService(billing))
