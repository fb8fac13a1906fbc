"""Async SQLAlchemy engine per service (own role, own schema) and `Database.transaction()`, the
one place anything commits (the rule: docs/01-architecture/transactions.md)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import orjson
import sqlalchemy.exc
from sqlalchemy import event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from runtime.settings import ServiceSettings

# Connections of the one-statement driver pool (per process, on top of the engine's pool).
READER_POOL_SIZE = 5

# A pooled connection idle longer than this is pinged before use (see `ping_when_idle`).
PING_IF_IDLE_SECONDS = 5.0

# Errors that mean "the infrastructure is briefly away", never "this input is bad".
TRANSIENT_DB_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.TooManyConnectionsError,
    sqlalchemy.exc.TimeoutError,  # no pooled connection free in time: overloaded, not bad input
)


def create_engine(settings: ServiceSettings, pool_size: int = 10) -> AsyncEngine:
    """Engine connecting as the service's own role, with its schema first on the search path."""
    engine = create_async_engine(
        settings.service_dsn(),
        # Overflow, not a fixed pool: a job may hold its transaction while a backend it calls
        # needs a connection of the same process (a fixed pool deadlocked on that under load).
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=10,
        pool_pre_ping=False,  # see ping_when_idle
        pool_recycle=1800,
        # An error's text (logged, sometimes relayed) never carries the bound values: they are
        # customer text (ticket bodies, emails) and secrets (password hashes, tokens).
        hide_parameters=True,
        # jsonb read back through orjson: a year of the tickets' KPI days is 2.5 MB of JSON
        # at a million customers, which the standard library decodes several times slower.
        json_deserializer=orjson.loads,
        connect_args={
            "server_settings": {
                "search_path": settings.schema,
                "application_name": settings.service_name,
            },
            "timeout": 10,
            "command_timeout": 30,
        },
    )
    ping_when_idle(engine)
    return engine


def ping_when_idle(engine: AsyncEngine, idle_seconds: float = PING_IF_IDLE_SECONDS) -> None:
    """Ping a pooled connection before use only if it sat idle for `idle_seconds`.

    SQLAlchemy's `pool_pre_ping` pings on every checkout, and with asyncpg a ping is three round
    trips (BEGIN, an empty query, ROLLBACK), a cost paid on every statement of a busy process
    (profiled in docs/05-ops/performance.md). A connection in steady use needs no ping; if the
    server went away under it, the statement fails with a disconnect error, SQLAlchemy
    invalidates every connection of that pool generation, and the caller sees a transient error
    it already handles (503 with Retry-After, a consumer retrying in place, a job deferred
    without spending an attempt). An idle connection (the first request after a quiet night and
    a database restart) is pinged, and replaced if the ping fails.
    """
    pool = engine.sync_engine.pool

    @event.listens_for(pool, "checkin")
    def _checked_in(dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(pool, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        since = record.info.pop("idle_since", None)
        if since is None or time.monotonic() - since < idle_seconds:
            return
        try:
            dbapi_connection.ping()
        except Exception as exc:  # the pool replaces the connection and checks out again
            raise sqlalchemy.exc.DisconnectionError(str(exc)[:200]) from exc


class OneStatementConnection(asyncpg.Connection):
    """A connection of the one-statement pool. asyncpg's pool resets every connection it takes
    back (`SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`): one more round
    trip per statement. A single statement leaves none of that behind (no session settings,
    cursors, listeners or session-level locks; an open transaction is still rolled back by
    asyncpg), so there is nothing to reset."""

    def get_reset_query(self) -> str:
        return ""


class OneStatementPool:
    """A small asyncpg pool for single statements, handed out first come, first served.

    asyncpg's pool queue lets a newcomer take a connection that was just released ahead of
    those already waiting for one (the woken waiter finds it gone and queues again at the
    back); with many more concurrent requests than connections, some requests starve. A FIFO
    semaphore (asyncio's is fair) in front of the pool keeps the order.
    """

    def __init__(self, dsn: str, size: int, **connect_kwargs: Any):
        self.dsn, self.size, self.connect_kwargs = dsn, size, connect_kwargs
        self._turns = asyncio.Semaphore(size)
        self._pool: Any = None
        self._opening = asyncio.Lock()

    async def _get(self) -> Any:
        if self._pool is None:
            async with self._opening:
                if self._pool is None:
                    self._pool = await asyncpg.create_pool(
                        self.dsn, min_size=1, max_size=self.size,
                        connection_class=OneStatementConnection, **self.connect_kwargs)
        return self._pool

    async def fetchrow(self, query: str, *args: Any) -> Any:
        pool = self._pool or await self._get()
        async with self._turns:
            return await pool.fetchrow(query, *args)

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        pool = self._pool or await self._get()
        async with self._turns:
            return await pool.fetch(query, *args)

    async def execute(self, query: str, *args: Any) -> str:
        pool = self._pool or await self._get()
        async with self._turns:
            return await pool.execute(query, *args)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()


class Database:
    """Owns the engine and the session factory of one service.

    `fetchrow`/`fetch` run one statement on a small pool of the driver's own connections, for
    the hottest paths (the gateway's session lookup on every request, the Telegram webhook's
    insert-once): no ORM, no explicit transaction (a single statement is atomic on its own), no
    ping, one round trip. Anything with more than one statement uses `transaction()`.
    """

    def __init__(self, settings: ServiceSettings, pool_size: int = 10):
        self.settings = settings
        self.engine = create_engine(settings, pool_size=pool_size)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._reader = OneStatementPool(
            settings.service_dsn().replace("postgresql+asyncpg://", "postgresql://", 1),
            READER_POOL_SIZE, timeout=10, command_timeout=30,
            server_settings={"search_path": settings.schema,
                             "application_name": settings.service_name})

    async def fetchrow(self, query: str, *args: Any) -> Any:
        """One statement on the driver pool; its first row (asyncpg Record) or None."""
        return await self._reader.fetchrow(query, *args)

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        """One statement on the driver pool; its rows (asyncpg Records)."""
        return await self._reader.fetch(query, *args)

    async def execute(self, query: str, *args: Any) -> str:
        """One statement on the driver pool; its status tag (e.g. 'INSERT 0 1')."""
        return await self._reader.execute(query, *args)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session whose work is committed on success and rolled back on any error."""
        async with self.sessions() as session:
            async with session.begin():
                yield session

    async def ping(self) -> None:
        """One `SELECT 1` on a pooled connection (the API's readiness check)."""
        async with self.engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")

    async def dispose(self) -> None:
        await self._reader.close()
        await self.engine.dispose()


def is_transient_db_error(exc: BaseException) -> bool:
    seen = 0
    cur: BaseException | None = exc
    while cur is not None and seen < 6:
        if isinstance(cur, TRANSIENT_DB_ERRORS):
            return True
        name = type(cur).__name__
        if name in {"OperationalError", "InterfaceError"} and "connection" in str(cur).lower():
            return True
        if getattr(cur, "connection_invalidated", False):
            return True
        cur = cur.__cause__ or cur.__context__
        seen += 1
    return False
