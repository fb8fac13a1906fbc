"""The one-statement driver pool takes connections back without asyncpg's reset round trip,
and still never hands out a connection with a transaction left open."""

from __future__ import annotations

import asyncio

import asyncpg

from runtime.db import OneStatementConnection

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


async def test_a_returned_connection_is_not_reset_by_an_extra_query():
    pool = await asyncpg.create_pool(DSN, min_size=1, max_size=1,
                                     connection_class=OneStatementConnection)
    try:
        pid = await pool.fetchval("SELECT pg_backend_pid() /* the statement */")
        state, query = await last_activity(pid)
        # The default pool would have run "SELECT pg_advisory_unlock_all(); CLOSE ALL; ..." last.
        assert (state, query) == ("idle", "SELECT pg_backend_pid() /* the statement */")
    finally:
        await pool.close()


async def test_a_transaction_left_open_is_still_rolled_back_on_release():
    pool = await asyncpg.create_pool(DSN, min_size=1, max_size=1,
                                     connection_class=OneStatementConnection)
    try:
        async with pool.acquire() as conn:
            pid = await conn.fetchval("SELECT pg_backend_pid()")
            await conn.execute("BEGIN")
            await conn.execute("CREATE TEMP TABLE left_behind (x int)")
        state, _ = await last_activity(pid)
        assert state == "idle"
        assert await pool.fetchval("SELECT to_regclass('pg_temp.left_behind') IS NULL")
    finally:
        await pool.close()
