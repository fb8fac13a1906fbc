"""Billing service tests: a database of their own (per TEST_SLOT), migrated like production, and
the sandbox provider's components over it."""

from __future__ import annotations

import pytest

from billing.config import Settings
from billing.wiring import Components, build_components
from runtime.testing import database_fixtures, test_slot, unit_database_url


def make_settings(**overrides: str) -> Settings:
    values = {"DATABASE_URL": unit_database_url("billing"), "PAYMENT_PROVIDER": "sandbox",
              "REDIS_URL": f"redis://127.0.0.1:6379/{1 + test_slot()}", **overrides}
    return Settings(**values)


migrated, db, pg = database_fixtures("billing", make_settings)


@pytest.fixture(scope="session")
async def sandbox(db) -> Components:
    parts = build_components(make_settings(), db)
    yield parts
    await parts.close()
