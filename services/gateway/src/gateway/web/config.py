"""Settings the web pages read besides the gateway's own (payment provider, sandbox chain)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from runtime.settings import provider_names


class WebSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    payment_provider: str = Field("sandbox", alias="PAYMENT_PROVIDER")
    payment_providers: str = Field("", alias="PAYMENT_PROVIDERS")
    sandbox_confirmations: int = Field(2, alias="SANDBOX_CONFIRMATIONS", ge=1)
    # the support contact shown on the landing page: the same bot the telegram service runs
    telegram_bot_username: str = Field("vpn_support_bot", alias="TELEGRAM_BOT_USERNAME")

    @property
    def sandbox(self) -> bool:
        """The sandbox chain is one of the enabled providers (as billing reads the settings)."""
        return "sandbox" in provider_names(self.payment_provider, self.payment_providers)


@lru_cache
def web_settings() -> WebSettings:
    return WebSettings()
