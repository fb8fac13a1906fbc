"""Tickets service tests: a database of their own (per TEST_SLOT), migrated like production."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from runtime.db import Database
from tickets.config import Settings

SLOT = int(os.environ.get("TEST_SLOT", "0"))
DB_NAME = f"tickets_unit{SLOT}"
ROOT = Path(__file__).resolve().parents[3]
DATABASE_URL = f"postgresql://postgres@127.0.0.1:5432/{DB_NAME}"


def make_settings() -> Settings:
    return Settings(DATABASE_URL=DATABASE_URL)


@pytest.fixture(scope="session")
def migrated() -> str:
    async def recreate() -> None:
        conn = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
        try:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                DB_NAME)
            await conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}"')
            await conn.execute(f'CREATE DATABASE "{DB_NAME}"')
        finally:
            await conn.close()

    asyncio.run(recreate())
    subprocess.run([sys.executable, "-m", "tickets", "migrate"], check=True, cwd=ROOT,
                   env={**os.environ, "DATABASE_URL": DATABASE_URL},
                   stdout=subprocess.DEVNULL)
    return DATABASE_URL


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
