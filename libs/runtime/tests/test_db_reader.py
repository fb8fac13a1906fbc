"""The one-statement driver pool: connections taken back without asyncpg's reset round trip (and
still never handed out with a transaction left open), and handed out in the order asked for."""

from __future__ import annotations

import asyncio
import contextvars

import asyncpg
import pytest

from runtime.db import OneStatementConnection, OneStatementPool

DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


async def last_activity(pid: int) -> tuple[str, str]:
    admin = await asyncpg.connect(DSN)
    try:
        for _ in range(50):  # the server updates pg_stat_activity right after the statement
            row = await admin.fetchrow(
                "SELECT state, query FROM pg_stat_activity WHERE pid = $1", pid)
            if row["state"] == "idle" or "transaction" in row["state"]:
                return row["state"], row["query"]
            await asyncio.sleep(0.02)
        return row["state"], row["query"]
    finally:
        await admin.close()


@pytest.fixture
async def one_connection_pool():
    pool = await asyncpg.create_pool(DSN, min_size=1, max_size=1,
                                     connection_class=OneStatementConnection)
    yield pool
    await pool.close()


async def test_a_returned_connection_is_not_reset_by_an_extra_query(one_connection_pool):
    pid = await one_connection_pool.fetchval("SELECT pg_backend_pid() /* the statement */")
    state, query = await last_activity(pid)
    # The default pool would have run "SELECT pg_advisory_unlock_all(); CLOSE ALL; ..." last.
    assert (state, query) == ("idle", "SELECT pg_backend_pid() /* the statement */")


async def test_a_transaction_left_open_is_still_rolled_back_on_release(one_connection_pool):
    async with one_connection_pool.acquire() as conn:
        pid = await conn.fetchval("SELECT pg_backend_pid()")
        await conn.execute("BEGIN")
        await conn.execute("CREATE TEMP TABLE left_behind (x int)")
    state, _ = await last_activity(pid)
    assert state == "idle"
    assert await one_connection_pool.fetchval(
        "SELECT to_regclass('pg_temp.left_behind') IS NULL")


async def test_connections_are_handed_out_first_come_first_served(monkeypatch):
    """Many more callers than connections, each asking again as soon as it is served (as a
    busy API does): connections go to callers exactly in the order they asked. (With asyncpg's
    own pool about 1,000 of these 1,280 statements got theirs out of turn.)"""
    callers, size, rounds = 64, 5, 20
    caller_id: contextvars.ContextVar[int | None] = contextvars.ContextVar("caller", default=None)
    asked: list[int] = []
    served: list[int] = []
    fetchrow = OneStatementConnection.fetchrow

    async def recorded(self, *args, **kwargs):  # runs once the caller holds a connection
        if caller_id.get() is not None:
            served.append(caller_id.get())
        return await fetchrow(self, *args, **kwargs)

    monkeypatch.setattr(OneStatementConnection, "fetchrow", recorded)
    pool = OneStatementPool(DSN, size)

    async def caller(i: int):
        caller_id.set(i)
        for _ in range(rounds):
            asked.append(i)
            await pool.fetchrow("SELECT 1")

    try:  # open all its connections first (a caller waiting on a new connection is not queued)
        await asyncio.gather(*(pool.fetchrow("SELECT pg_sleep(0.05)") for _ in range(size)))
        await asyncio.gather(*(caller(i) for i in range(callers)))
    finally:
        await pool.close()
    assert len(asked) == callers * rounds
    assert served == asked
