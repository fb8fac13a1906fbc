"""The telegram API process."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import Counter

from runtime.db import Database
from runtime.http import create_app, tcp_check
from runtime.jobs import JobQueue
from telegram.config import Settings
from telegram.endpoints import router
from telegram.jobs import NOTIFY, UPDATES, TelegramJobs

WEBHOOK_AUTH_FAILURES = Counter("telegram_webhook_auth_failures_total",
                                "Webhook calls refused for a missing or wrong secret")


def create_api(settings: Settings) -> FastAPI:
    db = Database(settings)
    jobs = TelegramJobs(JobQueue(NOTIFY, settings.redis_url, settings.jobs_prefix),
                        JobQueue(UPDATES, settings.redis_url, settings.jobs_prefix))

    async def db_check():
        async with db.engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await jobs.notify.close()
        await jobs.updates.close()
        await db.dispose()

    app = create_app(
        "telegram",
        readiness={"postgres": db_check, "rabbitmq": tcp_check(settings.rabbitmq_url, 5672),
                   "redis": tcp_check(settings.redis_url, 6379)},
        max_body=settings.max_body_bytes,
        lifespan=lifespan,
    )
    app.state.db = db
    app.state.settings = settings
    app.state.jobs = jobs
    app.state.webhook_auth_failures = WEBHOOK_AUTH_FAILURES
    app.include_router(router)
    return app
