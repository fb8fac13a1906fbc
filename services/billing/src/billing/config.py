"""Settings of the billing service: provider choice, rate lock, sandbox chain, watch schedules."""

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from runtime.settings import provider_names, service_settings

DEV_BTCPAY_WEBHOOK_SECRET = "dev-btcpay-webhook-secret"
DEV_NOWPAYMENTS_IPN_SECRET = "dev-nowpayments-ipn-secret"
# The Telegram emulator's token (the telegram service's development default too).
DEV_TELEGRAM_BOT_TOKEN = "123456:TEST-TOKEN"


class Settings(service_settings("billing", port=8101)):
    # The providers customers may pay with, in the order they are offered (comma separated);
    # PAYMENT_PROVIDER (one name) stays accepted when PAYMENT_PROVIDERS is not set.
    payment_provider: str = Field("sandbox", alias="PAYMENT_PROVIDER")
    payment_providers_setting: Annotated[list[str], NoDecode] = Field(
        default_factory=list, alias="PAYMENT_PROVIDERS")
    rate_lock_minutes: int = Field(15, alias="RATE_LOCK_MINUTES", ge=1)
    # USD per unit of each asset, used by the fixed-rate source (the default rate source).
    fixed_rates_usd: dict[str, Decimal] = Field(
        default_factory=lambda: {"USDT": Decimal("1"), "BTC": Decimal("60000"),
                                 "ETH": Decimal("3000")},
        alias="FIXED_RATES_USD",
    )
    sandbox_confirmations: int = Field(2, alias="SANDBOX_CONFIRMATIONS", ge=1)
    # The free trial: once per person (account and linked Telegram account).
    trial_enabled: bool = Field(True, alias="TRIAL_ENABLED")
    trial_days: int = Field(3, alias="TRIAL_DAYS", ge=1, le=90)
    trial_max_devices: int = Field(1, alias="TRIAL_MAX_DEVICES", ge=1, le=10)
    # Traffic a trial allows, in GB; 0: the VPN backend's default (VPN_DATA_LIMIT_BYTES).
    trial_traffic_gb: int = Field(0, alias="TRIAL_TRAFFIC_GB", ge=0, le=100_000)
    # What one top-up of the balance may add.
    top_up_min_usd: Decimal = Field(Decimal("1"), alias="TOP_UP_MIN_USD", gt=0)
    top_up_max_usd: Decimal = Field(Decimal("1000"), alias="TOP_UP_MAX_USD", gt=0)
    # The referrer's reward for a referred customer's first paid invoice: this percent of what
    # was paid, credited to the balance; or, when REFERRAL_REWARD_DAYS is above 0, those days
    # added to the referrer's subscription instead.
    referral_reward_percent: Decimal = Field(Decimal("10"), alias="REFERRAL_REWARD_PERCENT",
                                             ge=0, le=100)
    referral_reward_days: int = Field(0, alias="REFERRAL_REWARD_DAYS", ge=0, le=365)

    btcpay_url: str = Field("http://127.0.0.1:23000", alias="BTCPAY_URL")
    btcpay_api_key: str = Field("", alias="BTCPAY_API_KEY")
    btcpay_store_id: str = Field("", alias="BTCPAY_STORE_ID")
    btcpay_webhook_secret: str = Field(DEV_BTCPAY_WEBHOOK_SECRET, alias="BTCPAY_WEBHOOK_SECRET")
    provider_timeout_seconds: float = Field(10.0, alias="PROVIDER_TIMEOUT_SECONDS", gt=0)
    # Telegram Stars: invoices are made with the shop bot (the telegram service's bot, the same
    # settings); a plan without `price_stars` costs its USD price × STARS_PER_USD, rounded up.
    telegram_bot_token: str = Field(DEV_TELEGRAM_BOT_TOKEN, alias="TELEGRAM_BOT_TOKEN")
    telegram_api_base: str = Field("http://127.0.0.1:8081", alias="TELEGRAM_API_BASE")
    stars_per_usd: Decimal = Field(Decimal("50"), alias="STARS_PER_USD", gt=0, le=100_000)
    # Crypto Pay (@CryptoBot): the API base (testnet: https://testnet-pay.crypt.bot/api), the
    # app's token (it also signs the webhooks), the coins a customer may pay a USD invoice with.
    cryptopay_api_base: str = Field("https://pay.crypt.bot/api", alias="CRYPTOPAY_API_BASE")
    cryptopay_token: str = Field("", alias="CRYPTOPAY_TOKEN")
    cryptopay_accepted_assets: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["USDT", "TON", "BTC"], alias="CRYPTOPAY_ACCEPTED_ASSETS")
    # Where the USD rate of an asset comes from: `fixed` (FIXED_RATES_USD) or `cryptopay`
    # (Crypto Pay's getExchangeRates, never used older than RATES_MAX_AGE_SECONDS).
    rate_source: Literal["fixed", "cryptopay"] = Field("fixed", alias="RATE_SOURCE")
    rates_max_age_seconds: int = Field(300, alias="RATES_MAX_AGE_SECONDS", ge=1, le=86400)

    payment_watch_interval_ms: int = Field(5000, alias="PAYMENT_WATCH_INTERVAL_MS", ge=100)
    invoice_expiry_interval_ms: int = Field(10000, alias="INVOICE_EXPIRY_INTERVAL_MS", ge=100)
    # Expired invoices stay watched this long, so a late payment is recorded, never lost.
    late_payment_watch_hours: int = Field(72, alias="LATE_PAYMENT_WATCH_HOURS", ge=1)
    idempotency_ttl_hours: int = Field(24, alias="IDEMPOTENCY_TTL_HOURS", ge=1)
    # An `in_progress` key older than this belongs to a crashed request and may be taken over.
    idempotency_stale_seconds: int = Field(120, alias="IDEMPOTENCY_STALE_SECONDS", ge=10)
    watch_concurrency: int = Field(8, alias="PAYMENT_WATCH_CONCURRENCY", ge=1)
    # Connections of the API process (as many again may overflow): bursts wait on the pool
    # instead of exhausting the server's connection slots.
    api_pool_size: int = Field(5, alias="BILLING_DB_POOL_SIZE", ge=1)

    # NOWPayments: the API base (sandbox: https://api-sandbox.nowpayments.io/v1), the API key,
    # the IPN secret that signs its webhooks, the currencies a customer may pay in (its codes,
    # comma separated) and where IPNs go (default: APP_BASE_URL's webhook route).
    nowpayments_api_base: str = Field("https://api.nowpayments.io/v1",
                                      alias="NOWPAYMENTS_API_BASE")
    nowpayments_api_key: str = Field("", alias="NOWPAYMENTS_API_KEY")
    nowpayments_ipn_secret: str = Field(DEV_NOWPAYMENTS_IPN_SECRET,
                                        alias="NOWPAYMENTS_IPN_SECRET")
    nowpayments_pay_currencies: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["usdttrc20", "btc"], alias="NOWPAYMENTS_PAY_CURRENCIES")
    nowpayments_ipn_url_setting: str = Field("", alias="NOWPAYMENTS_IPN_URL")

    @field_validator("payment_providers_setting", mode="before")
    @classmethod
    def _split_providers(cls, v):
        names = provider_names("", v)
        names = [n for n in names if n]
        if len(set(names)) != len(names):
            raise ValueError("PAYMENT_PROVIDERS names a provider twice")
        return names

    @field_validator("cryptopay_accepted_assets", mode="before")
    @classmethod
    def _split_assets(cls, v):
        items = v.split(",") if isinstance(v, str) else list(v)
        assets = [str(a).strip().upper() for a in items if str(a).strip()]
        if not assets or not all(a.isalnum() and len(a) <= 10 for a in assets):
            raise ValueError("CRYPTOPAY_ACCEPTED_ASSETS must list asset codes, comma separated")
        return assets

    @property
    def payment_providers(self) -> list[str]:
        return provider_names(self.payment_provider, self.payment_providers_setting)

    @field_validator("nowpayments_pay_currencies", mode="before")
    @classmethod
    def _split_pay_currencies(cls, v):
        items = v.split(",") if isinstance(v, str) else list(v)
        codes = [str(c).strip().lower() for c in items if str(c).strip()]
        if not codes or not all(c.isascii() and c.isalnum() and len(c) <= 32 for c in codes):
            raise ValueError("NOWPAYMENTS_PAY_CURRENCIES must list currency codes, comma "
                             "separated")
        if len(set(codes)) != len(codes):
            raise ValueError("NOWPAYMENTS_PAY_CURRENCIES names a currency twice")
        return codes

    @property
    def nowpayments_ipn_url(self) -> str:
        return self.nowpayments_ipn_url_setting or (
            f"{self.app_base_url.rstrip('/')}/api/v1/payments/webhooks/nowpayments")

    @property
    def is_sandbox(self) -> bool:
        return "sandbox" in self.payment_providers

    def sandbox_adapters(self) -> dict[str, bool]:
        name = "PAYMENT_PROVIDERS" if self.payment_providers_setting else "PAYMENT_PROVIDER"
        return {**super().sandbox_adapters(), name: self.is_sandbox}

    def secret_defaults(self) -> dict[str, bool]:
        weak = super().secret_defaults()
        if "nowpayments" in self.payment_providers:
            weak["NOWPAYMENTS_IPN_SECRET"] = self.nowpayments_ipn_secret in (
                DEV_NOWPAYMENTS_IPN_SECRET, "")
        if "btcpay" in self.payment_providers:
            weak["BTCPAY_WEBHOOK_SECRET"] = self.btcpay_webhook_secret in (
                DEV_BTCPAY_WEBHOOK_SECRET, "")
        if "cryptopay" in self.payment_providers or self.rate_source == "cryptopay":
            # the token signs Crypto Pay's webhooks: without one, nothing could be verified
            weak["CRYPTOPAY_TOKEN"] = not self.cryptopay_token
        if "stars" in self.payment_providers:
            weak["TELEGRAM_BOT_TOKEN"] = self.telegram_bot_token in (DEV_TELEGRAM_BOT_TOKEN, "")
        return weak
