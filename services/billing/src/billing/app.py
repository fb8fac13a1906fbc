"""The billing API process."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI

from billing.config import Settings
from billing.endpoints import router, sandbox_router
from billing.wiring import build_components
from runtime.db import Database
from runtime.http import create_app, tcp_check
from runtime.service import internal_api_docs


def create_api(settings: Settings) -> FastAPI:
    db = Database(settings, pool_size=settings.api_pool_size)
    parts = build_components(settings, db)

    async def db_check():
        async with db.engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await parts.close()
        await db.dispose()

    app = create_app(
        "billing",
        readiness={"postgres": db_check, "rabbitmq": tcp_check(settings.rabbitmq_url, 5672),
                   "redis": tcp_check(settings.redis_url, 6379)},
        max_body=settings.max_body_bytes,
        lifespan=lifespan,
        **internal_api_docs(settings),
    )
    app.state.db = db
    app.state.settings = settings
    app.state.billing = parts.billing
    app.state.webhooks = parts.webhooks
    app.include_router(router)
    if settings.is_sandbox:
        app.include_router(sandbox_router)
    return app
