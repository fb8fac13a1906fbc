"""Gateway unit tests: settings and request handling without the rest of the system (Redis on
localhost where a test needs it, one database number per TEST_SLOT), and the identity store
on a database of each TEST_SLOT's own, migrated like production."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from gateway.config import Settings
from runtime.logging import configure_logging
from runtime.testing import database_fixtures, test_slot, unit_database_url

SLOT = test_slot()

# Logged as in production (one JSON line each): structlog's development renderer would print
# every failing request's traceback with the locals of each frame, slowly.
configure_logging("gateway-tests")


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    """A Redis database no e2e stack of any slot uses (they take 1 + slot), emptied first."""
    client = Redis.from_url(f"redis://127.0.0.1:6379/{10 + SLOT}")
    await client.flushdb()
    yield client
    await client.aclose()


def make_settings(**overrides: str) -> Settings:
    return Settings(**{"DATABASE_URL": unit_database_url("gateway"),
                       "REDIS_URL": f"redis://127.0.0.1:6379/{10 + SLOT}", **overrides})


migrated, db, pg = database_fixtures("gateway", make_settings)


def _helper_module(name: str):
    # The suite imports test files by path (--import-mode=importlib), so the helper modules next
    # to them are loaded the same way, as `gateway_tests_<name>`, before any test imports them.
    path = Path(__file__).with_name(f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"gateway_tests_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


fake_services = _helper_module("fake_services")
factories = _helper_module("factories")


@pytest.fixture
async def services():
    """The services behind the gateway, as real HTTP servers (fake_services.py)."""
    fake = fake_services.FakeServices()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
def gateway_settings(services) -> Settings:
    """Settings of a gateway on this slot's database whose clients call `services`."""
    return make_settings(**services.settings())
