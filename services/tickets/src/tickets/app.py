"""The tickets API process."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI

from runtime.db import Database
from runtime.http import create_app, tcp_check
from runtime.service import internal_api_docs
from tickets.config import Settings
from tickets.endpoints import router


def create_api(settings: Settings) -> FastAPI:
    db = Database(settings)

    async def db_check():
        async with db.engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await db.dispose()

    app = create_app(
        "tickets",
        readiness={"postgres": db_check, "rabbitmq": tcp_check(settings.rabbitmq_url, 5672),
                   "redis": tcp_check(settings.redis_url, 6379)},
        max_body=settings.max_body_bytes,
        lifespan=lifespan,
        **internal_api_docs(settings),
    )
    app.state.db = db
    app.state.settings = settings
    app.include_router(router)
    return app
