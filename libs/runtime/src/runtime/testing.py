"""Test support shared by every service's tests: a database of its own, migrated like production."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import asyncpg

SERVER = "postgresql://postgres@127.0.0.1:5432"
ROOT = Path(__file__).resolve().parents[4]

T = TypeVar("T")


def test_slot() -> int:
    """TEST_SLOT lets several test runs share this machine's infrastructure without colliding."""
    return int(os.environ.get("TEST_SLOT", "0"))


def database_url(db_name: str) -> str:
    return f"{SERVER}/{db_name}"


def recreate_and_migrate(service: str, db_name: str) -> str:
    """Drop and create `db_name`, run `python -m <service> migrate` into it; its URL."""

    async def recreate() -> None:
        conn = await asyncpg.connect(f"{SERVER}/postgres")
        try:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                db_name)
            await conn.execute(f'DROP DATABASE IF EXISTS "{db_name}"')
            await conn.execute(f'CREATE DATABASE "{db_name}"')
        finally:
            await conn.close()

    asyncio.run(recreate())
    url = database_url(db_name)
    subprocess.run([sys.executable, "-m", service, "migrate"], check=True, cwd=ROOT,
                   env={**os.environ, "DATABASE_URL": url}, stdout=subprocess.DEVNULL)
    return url


async def await_for(predicate: Callable[[], Awaitable[T]], timeout: float = 20,
                    interval: float = 0.1, message: str = "condition") -> T:
    """The first truthy value of `predicate`, polled until `timeout` (then an AssertionError)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await predicate()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out waiting for {message}; last value: {last!r}")
