"""Payment providers behind one interface; `build_provider` picks the configured one."""

from __future__ import annotations

from billing.config import Settings
from billing.providers.base import PaymentProvider
from billing.providers.btcpay import BTCPayProvider
from billing.providers.sandbox import SandboxProvider
from runtime.db import Database


def build_provider(settings: Settings, db: Database) -> PaymentProvider:
    if settings.payment_provider == "sandbox":
        return SandboxProvider(db, settings.sandbox_confirmations)
    if settings.payment_provider == "btcpay":
        return BTCPayProvider(settings.btcpay_url, settings.btcpay_api_key,
                              settings.btcpay_store_id, settings.provider_timeout_seconds,
                              monitoring_minutes=settings.late_payment_watch_hours * 60,
                              concurrency=settings.watch_concurrency)
    raise ValueError(f"unknown PAYMENT_PROVIDER {settings.payment_provider!r}")
