"""The telegram API process."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import Counter

from runtime.db import Database
from runtime.http import create_app
from runtime.service import internal_api_docs
from telegram.config import Settings
from telegram.endpoints import router

WEBHOOK_AUTH_FAILURES = Counter("telegram_webhook_auth_failures_total",
                                "Webhook calls refused for a missing or wrong secret")
UPDATES_DISCARDED = Counter("telegram_updates_discarded_total",
                            "Webhook updates answered 200 but discarded as unusable", ["reason"])


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
        input_guard_exempt={"/internal/webhook"},  # answers 200 to any update
        lifespan=lifespan,
        **internal_api_docs(settings),
    )
    app.state.db = db
    app.state.settings = settings
    app.state.webhook_auth_failures = WEBHOOK_AUTH_FAILURES
    app.state.updates_discarded = UPDATES_DISCARDED
    app.include_router(router)
    return app
