"""The gateway's settings in production: the web pages' sandbox chain is refused unless allowed."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.config import Settings
from runtime.testing import production_settings

# The gateway checks Telegram sign-in hashes with the bot token: production refuses the default.
PRODUCTION = {**production_settings("gateway"), "TELEGRAM_BOT_TOKEN": "42:real-token"}


def test_production_refuses_the_emulators_bot_token():
    with pytest.raises(ValidationError, match="TELEGRAM_BOT_TOKEN"):
        Settings(**{**PRODUCTION, "TELEGRAM_BOT_TOKEN": "123456:TEST-TOKEN"},
                 PAYMENT_PROVIDER="btcpay")


def test_production_refuses_the_sandbox_payment_provider():
    with pytest.raises(ValidationError, match="PAYMENT_PROVIDER=sandbox"):
        Settings(**PRODUCTION, PAYMENT_PROVIDER="sandbox")


def test_a_staging_cluster_may_allow_it_and_is_warned():
    settings = Settings(**PRODUCTION, PAYMENT_PROVIDER="sandbox",
                        ALLOW_SANDBOX_IN_PRODUCTION="true")
    assert any("PAYMENT_PROVIDER=sandbox" in w for w in settings.startup_warnings())
    assert Settings(**PRODUCTION, PAYMENT_PROVIDER="btcpay").startup_warnings() == []
