"""Telegram service tests: a database of their own (per TEST_SLOT), migrated like production."""

from __future__ import annotations

import os
from pathlib import Path

import asyncpg
import pytest

from runtime.db import Database
from runtime.testing import recreate_and_migrate
from telegram.config import Settings

SLOT = int(os.environ.get("TEST_SLOT", "0"))
DB_NAME = f"telegram_unit{SLOT}"
ROOT = Path(__file__).resolve().parents[3]
DATABASE_URL = f"postgresql://postgres@127.0.0.1:5432/{DB_NAME}"


def make_settings() -> Settings:
    return Settings(DATABASE_URL=DATABASE_URL, REDIS_URL=f"redis://127.0.0.1:6379/{1 + SLOT}")


@pytest.fixture(scope="session")
def migrated() -> str:
    """A database of this slot's own, recreated and migrated like production."""
    return recreate_and_migrate("telegram", DB_NAME)


@pytest.fixture(scope="session")
async def db(migrated) -> Database:
    database = Database(make_settings())
    yield database
    await database.dispose()


@pytest.fixture
async def pg(migrated):
    conn = await asyncpg.connect(DATABASE_URL)
    yield conn
    await conn.close()
