"""Billing service tests: a database of their own (per TEST_SLOT), migrated like production."""

from __future__ import annotations

import os
from pathlib import Path

import asyncpg
import pytest

from billing.config import Settings
from billing.wiring import Components, build_components
from runtime.db import Database
from runtime.testing import recreate_and_migrate

SLOT = int(os.environ.get("TEST_SLOT", "0"))
DB_NAME = f"billing_unit{SLOT}"
ROOT = Path(__file__).resolve().parents[3]
DATABASE_URL = f"postgresql://postgres@127.0.0.1:5432/{DB_NAME}"
ADMIN_DSN = DATABASE_URL


def make_settings(**overrides: str) -> Settings:
    values = {"DATABASE_URL": DATABASE_URL, "PAYMENT_PROVIDER": "sandbox",
              "REDIS_URL": f"redis://127.0.0.1:6379/{1 + SLOT}", **overrides}
    return Settings(**values)


@pytest.fixture(scope="session")
def migrated() -> str:
    """A database of this slot's own, recreated and migrated like production."""
    return recreate_and_migrate("billing", DB_NAME)


@pytest.fixture(scope="session")
async def db(migrated) -> Database:
    database = Database(make_settings())
    yield database
    await database.dispose()


@pytest.fixture(scope="session")
async def sandbox(db) -> Components:
    parts = build_components(make_settings(), db)
    yield parts
    await parts.close()


@pytest.fixture
async def pg(migrated):
    conn = await asyncpg.connect(ADMIN_DSN)
    yield conn
    await conn.close()
