"""The provisioner API process: subscriptions, live access configs, admin actions, failed jobs."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI

from provisioner.backends import build_backend
from provisioner.config import Settings
from provisioner.endpoints import router
from provisioner.jobs import PROVISION, ProvisionJobs
from provisioner.service import ProvisioningService
from runtime.db import Database
from runtime.http import create_app, tcp_check
from runtime.jobs import JobQueue
from runtime.service import internal_api_docs


def create_api(settings: Settings) -> FastAPI:
    db = Database(settings)
    backend = build_backend(settings, db)
    jobs = ProvisionJobs(JobQueue(PROVISION, settings.redis_url, settings.jobs_prefix), settings)

    async def db_check():
        async with db.engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await jobs.queue.close()
        await backend.close()
        await db.dispose()

    app = create_app(
        "provisioner",
        readiness={"postgres": db_check, "rabbitmq": tcp_check(settings.rabbitmq_url, 5672),
                   "redis": tcp_check(settings.redis_url, 6379)},
        max_body=settings.max_body_bytes,
        lifespan=lifespan,
        **internal_api_docs(settings),
    )
    app.state.db = db
    app.state.settings = settings
    app.state.service = ProvisioningService(backend)
    app.state.jobs = jobs
    app.include_router(router)
    return app
