"""The tickets API process."""

from __future__ import annotations

from fastapi import FastAPI

from runtime.db import Database
from runtime.operations import Operations, operations_router
from runtime.service import internal_api
from tickets import attachments_api, consumers
from tickets.config import Settings
from tickets.endpoints import router


def create_api(settings: Settings) -> FastAPI:
    app = internal_api(settings, Database(settings),
                       uploads=[(p, attachments_api.UPLOAD_MAX_BODY)
                                for p in attachments_api.UPLOAD_PATHS])
    app.include_router(router)
    app.include_router(attachments_api.router)
    app.include_router(operations_router(Operations(settings, consumer_queues=[consumers.QUEUE])))
    return app
