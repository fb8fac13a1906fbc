"""The provisioner's settings in production: the sandbox VPN backend is refused unless a staging
cluster allows it explicitly (and then every start warns)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from provisioner.config import Settings
from runtime.testing import production_settings

PRODUCTION = production_settings("provisioner")


def test_production_refuses_the_sandbox_vpn_backend():
    with pytest.raises(ValidationError, match="VPN_BACKEND=sandbox"):
        Settings(**PRODUCTION, VPN_BACKEND="sandbox")


def test_the_flag_allows_it_with_a_warning_and_a_real_backend_needs_no_flag():
    allowed = Settings(**PRODUCTION, VPN_BACKEND="sandbox", ALLOW_SANDBOX_IN_PRODUCTION="true")
    assert any("VPN_BACKEND=sandbox" in w for w in allowed.startup_warnings())
    real = Settings(**PRODUCTION, VPN_BACKEND="marzban", MARZBAN_BASE_URL="https://m.example",
                    MARZBAN_USERNAME="admin", MARZBAN_PASSWORD="p" * 16)
    assert real.startup_warnings() == []
