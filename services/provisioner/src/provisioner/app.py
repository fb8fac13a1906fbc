"""The provisioner API process: subscriptions, live access configs, admin actions, failed jobs."""

from __future__ import annotations

from functools import partial

from fastapi import FastAPI

from provisioner.backends import build_backend
from provisioner.config import Settings
from provisioner.consumers import BILLING_QUEUE, IDENTITY_QUEUE
from provisioner.endpoints import router
from provisioner.jobs import PROVISION, SCHEDULES, ProvisionJobs, retry_failed_job
from provisioner.link_api import router as link_router
from provisioner.links import LinkService
from provisioner.moves import MoveService
from provisioner.servers import ServerPool
from provisioner.service import ProvisioningService
from runtime.db import Database
from runtime.jobs import JobQueue
from runtime.operations import Operations, operations_router
from runtime.service import internal_api


def create_api(settings: Settings) -> FastAPI:
    db = Database(settings)
    backend = build_backend(settings, db)
    jobs = ProvisionJobs(JobQueue(PROVISION, settings.redis_url, settings.jobs_prefix), settings)
    pool = ServerPool(db, settings, backend)
    links = LinkService(settings, db, pool, backend)
    app = internal_api(settings, db, on_close=[jobs.queue.close, pool.close, backend.close,
                                               links.close])
    app.state.service = ProvisioningService(backend, settings.auto_renew_hours_before, pool)
    app.state.jobs = jobs
    app.state.moves = MoveService(pool)
    app.state.links = links
    app.include_router(router)
    app.include_router(link_router)
    app.include_router(operations_router(Operations(
        settings, job_queues=[PROVISION, SCHEDULES],
        consumer_queues=[BILLING_QUEUE, IDENTITY_QUEUE],
        # the provisioner's own retry: the failed grant is reopened before the job runs again
        retry={PROVISION: partial(retry_failed_job, db, jobs, app.state.service)})))
    return app
