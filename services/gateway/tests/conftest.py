"""Gateway unit tests: settings and request handling without the rest of the system (Redis on
localhost where a test needs it, one database number per TEST_SLOT), and the identity store
on a database of each TEST_SLOT's own, migrated like production."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import asyncpg
import pytest
from redis.asyncio import Redis

from gateway.config import Settings
from runtime.db import Database
from runtime.testing import recreate_and_migrate

SLOT = int(os.environ.get("TEST_SLOT", "0"))


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    """A Redis database no e2e stack of any slot uses (they take 1 + slot), emptied first."""
    client = Redis.from_url(f"redis://127.0.0.1:6379/{10 + SLOT}")
    await client.flushdb()
    yield client
    await client.aclose()


DB_NAME = f"gateway_unit{SLOT}"
DATABASE_URL = f"postgresql://postgres@127.0.0.1:5432/{DB_NAME}"


def make_settings(**overrides: str) -> Settings:
    return Settings(**{"DATABASE_URL": DATABASE_URL,
                       "REDIS_URL": f"redis://127.0.0.1:6379/{10 + SLOT}", **overrides})


@pytest.fixture(scope="session")
def migrated() -> str:
    """A database of this slot's own, recreated and migrated like production."""
    return recreate_and_migrate("gateway", DB_NAME)


@pytest.fixture(scope="session")
async def db(migrated):
    database = Database(make_settings())
    yield database
    await database.dispose()


@pytest.fixture
async def pg(migrated):
    conn = await asyncpg.connect(DATABASE_URL)
    yield conn
    await conn.close()
