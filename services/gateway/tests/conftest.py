"""Gateway unit tests: settings and request handling without the rest of the system (Redis on
localhost where a test needs it, one database number per TEST_SLOT)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

SLOT = int(os.environ.get("TEST_SLOT", "0"))


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    """A Redis database no e2e stack of any slot uses (they take 1 + slot), emptied first."""
    client = Redis.from_url(f"redis://127.0.0.1:6379/{10 + SLOT}")
    await client.flushdb()
    yield client
    await client.aclose()
