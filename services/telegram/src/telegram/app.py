"""The telegram API process."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import Counter

from runtime.db import Database
from runtime.http import create_app
from telegram.config import Settings
from telegram.endpoints import router

WEBHOOK_AUTH_FAILURES = Counter("telegram_webhook_auth_failures_total",
                                "Webhook calls refused for a missing or wrong secret")


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
        "telegram",
        readiness={"postgres": db_check},
        max_body=settings.max_body_bytes,
        lifespan=lifespan,
    )
    app.state.db = db
    app.state.settings = settings
    app.state.webhook_auth_failures = WEBHOOK_AUTH_FAILURES
    app.include_router(router)
    return app
