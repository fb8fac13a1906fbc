"""The billing API process."""

from __future__ import annotations

from fastapi import FastAPI

from billing import consumers
from billing.config import Settings
from billing.endpoints import router, sandbox_router
from billing.jobs import PAYMENT_WATCH_QUEUE
from billing.wiring import build_components
from runtime.db import Database
from runtime.operations import Operations, operations_router
from runtime.service import internal_api


def create_api(settings: Settings) -> FastAPI:
    db = Database(settings, pool_size=settings.api_pool_size)
    parts = build_components(settings, db)
    app = internal_api(settings, db, on_close=[parts.close])
    app.state.billing = parts.billing
    app.state.webhooks = parts.webhooks
    app.state.renewals = parts.renewals
    app.include_router(router)
    app.include_router(operations_router(Operations(settings, job_queues=[PAYMENT_WATCH_QUEUE],
                                                    consumer_queues=[consumers.QUEUE,
                                                                     consumers.PROVISIONING_QUEUE,
                                                                     consumers.IDENTITY_QUEUE,
                                                                     consumers.STARS_QUEUE])))
    if settings.is_sandbox:
        app.include_router(sandbox_router)
    return app
