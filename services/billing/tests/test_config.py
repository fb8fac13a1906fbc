"""Billing's settings in production: the sandbox chain is refused unless a staging cluster
allows it explicitly (and then every start warns)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from billing.config import Settings
from runtime.testing import production_settings

PRODUCTION = production_settings("billing")


def test_production_refuses_the_sandbox_payment_provider():
    with pytest.raises(ValidationError) as refused:
        Settings(**PRODUCTION, PAYMENT_PROVIDER="sandbox")
    assert "PAYMENT_PROVIDER=sandbox" in str(refused.value)
    assert "ALLOW_SANDBOX_IN_PRODUCTION" in str(refused.value)


def test_the_flag_allows_it_with_a_warning_and_btcpay_needs_no_flag():
    allowed = Settings(**PRODUCTION, PAYMENT_PROVIDER="sandbox",
                       ALLOW_SANDBOX_IN_PRODUCTION="true")
    assert allowed.is_sandbox and allowed.startup_warnings()
    real = Settings(**PRODUCTION, PAYMENT_PROVIDER="btcpay", BTCPAY_WEBHOOK_SECRET="w" * 32)
    assert real.startup_warnings() == []
