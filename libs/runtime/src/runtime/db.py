"""Async SQLAlchemy engine per service (own role, own schema) and the one place that commits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from runtime.settings import ServiceSettings

# Errors that mean "the infrastructure is briefly away", never "this input is bad".
try:
    import asyncpg

    TRANSIENT_DB_ERRORS: tuple[type[BaseException], ...] = (
        OSError,
        ConnectionError,
        asyncpg.exceptions.CannotConnectNowError,
        asyncpg.exceptions.ConnectionDoesNotExistError,
        asyncpg.exceptions.AdminShutdownError,
        asyncpg.exceptions.InterfaceError,
        asyncpg.exceptions.TooManyConnectionsError,
    )
except ImportError:  # pragma: no cover
    TRANSIENT_DB_ERRORS = (OSError, ConnectionError)


def create_engine(settings: ServiceSettings, pool_size: int = 10) -> AsyncEngine:
    """Engine connecting as the service's own role, with its schema first on the search path."""
    return create_async_engine(
        settings.service_dsn(),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={
            "server_settings": {
                "search_path": settings.schema,
                "application_name": settings.service_name,
            },
            "timeout": 10,
            "command_timeout": 30,
        },
    )


class Database:
    """Owns the engine and the session factory of one service."""

    def __init__(self, settings: ServiceSettings, pool_size: int = 10):
        self.settings = settings
        self.engine = create_engine(settings, pool_size=pool_size)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session whose work is committed on success and rolled back on any error."""
        async with self.sessions() as session:
            async with session.begin():
                yield session

    async def dispose(self) -> None:
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
