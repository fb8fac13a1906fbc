"""The provisioner worker process: billing/identity consumers, `provision` jobs, the periodic
sweeps and the outbox relay (the runtime serves its metrics on WORKER_METRICS_PORT)."""

from __future__ import annotations

from provisioner.backends import build_backend
from provisioner.config import Settings
from provisioner.consumers import (
    InlineGate,
    build_billing_subscription,
    build_identity_subscription,
)
from provisioner.jobs import (
    PROVISION,
    SCHEDULES,
    ProvisionJobs,
    provision_handlers,
    schedule_handlers,
    schedules,
    server_schedule_handlers,
    server_schedules,
)
from provisioner.servers import ServerPool
from provisioner.service import ProvisioningService, events
from runtime.jobs import JobQueue, JobWorker
from runtime.service import WorkerContext


async def build_worker(ctx: WorkerContext) -> None:
    settings: Settings = ctx.settings  # type: ignore[assignment]
    backend = build_backend(settings, ctx.db)
    pool = ServerPool(ctx.db, settings, backend)
    service = ProvisioningService(backend, settings.auto_renew_hours_before, pool)
    jobs = ProvisionJobs(JobQueue(PROVISION, settings.redis_url, settings.jobs_prefix), settings)
    sweeps = JobQueue(SCHEDULES, settings.redis_url, settings.jobs_prefix)
    ctx.queues += [jobs.queue, sweeps]
    ctx.outbox = events
    gate = InlineGate(settings.provision_inline, settings.provision_inline_cooldown_seconds,
                      settings.provision_inline_concurrency)
    ctx.subscriptions.append(build_billing_subscription(ctx.db, service, jobs, gate))
    ctx.subscriptions.append(build_identity_subscription(ctx.db, service, jobs))
    ctx.job_workers.append(JobWorker(PROVISION, settings.redis_url,
                                     provision_handlers(ctx.db, service),
                                     concurrency=settings.provision_concurrency,
                                     prefix=settings.jobs_prefix))
    ctx.job_workers.append(JobWorker(SCHEDULES, settings.redis_url,
                                     {**schedule_handlers(ctx.db, service, jobs, settings),
                                      **server_schedule_handlers(pool)},
                                     concurrency=2, prefix=settings.jobs_prefix))
    ctx.schedules += schedules(sweeps, settings) + server_schedules(sweeps, settings)
    ctx.on_close += [pool.close, backend.close]
