"""The tickets API process."""

from __future__ import annotations

from fastapi import FastAPI

from runtime.db import Database
from runtime.operations import Operations, operations_router
from runtime.service import internal_api
from tickets import consumers
from tickets.config import Settings
from tickets.endpoints import router


def create_api(settings: Settings) -> FastAPI:
    app = internal_api(settings, Database(settings))
    app.include_router(router)
    app.include_router(operations_router(Operations(settings, consumer_queues=[consumers.QUEUE])))
    return app
