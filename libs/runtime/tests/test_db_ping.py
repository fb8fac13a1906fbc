"""Pooled connections against a real Postgres whose server side goes away: an idle one is
pinged and replaced unseen; a busy one fails once with a transient error, then the pool heals."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from runtime.db import is_transient_db_error, ping_when_idle

DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


async def backend_pid(engine) -> int:
    async with engine.connect() as conn:
        return (await conn.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one()


async def terminate(pid: int) -> None:
    admin = await asyncpg.connect(DSN)
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()


@asynccontextmanager
async def one_connection_engine(idle_seconds: float):
    engine = create_async_engine(DSN.replace("postgresql://", "postgresql+asyncpg://"),
                                 pool_size=1, max_overflow=0)
    ping_when_idle(engine, idle_seconds=idle_seconds)
    try:
        yield engine
    finally:
        await engine.dispose()


async def server_side_lost(engine, seconds_ago: float) -> int:
    """The backend pid of the pool's connection, whose server side was terminated `seconds_ago`."""
    pid = await backend_pid(engine)
    await terminate(pid)
    await asyncio.sleep(seconds_ago)
    return pid


async def test_an_idle_connection_is_pinged_and_replaced():
    async with one_connection_engine(idle_seconds=0.2) as engine:
        first = await server_side_lost(engine, 0.4)
        second = await backend_pid(engine)  # no error reaches the caller
        assert second != first


async def test_a_busy_connection_fails_once_as_transient_then_the_pool_heals():
    async with one_connection_engine(idle_seconds=60) as engine:
        first = await server_side_lost(engine, 0.1)
        with pytest.raises(Exception) as failed:
            await backend_pid(engine)
        assert is_transient_db_error(failed.value), repr(failed.value)
        assert await backend_pid(engine) != first
