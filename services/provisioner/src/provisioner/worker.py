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
    move_handlers,
    move_schedule_handlers,
    move_schedules,
    provision_handlers,
    schedule_handlers,
    schedules,
    server_schedule_handlers,
    server_schedules,
)
from provisioner.moves import MoveService
from provisioner.servers import ServerPool
from provisioner.service import ProvisioningService, events
from runtime.jobs import JobQueue, JobWorker
from runtime.service import WorkerContext


async def build_worker(ctx: WorkerContext) -> None:
    settings: Settings = ctx.settings  # type: ignore[assignment]
    backend = build_backend(settings, ctx.db)
    pool = ServerPool(ctx.db, settings, backend)
    service = ProvisioningService(backend, settings.auto_renew_hours_before, pool)
    moves = MoveService(pool)
    jobs = ProvisionJobs(JobQueue(PROVISION, settings.redis_url, settings.jobs_prefix), settings)
    sweeps = JobQueue(SCHEDULES, settings.redis_url, settings.jobs_prefix)
    ctx.queues += [jobs.queue, sweeps]
    ctx.outbox = events
    gate = InlineGate(settings.provision_inline, settings.provision_inline_cooldown_seconds,
                      settings.provision_inline_concurrency)
    ctx.subscriptions.append(build_billing_subscription(ctx.db, service, jobs, gate))
    ctx.subscriptions.append(build_identity_subscription(ctx.db, service, jobs))
    ctx.job_workers.append(JobWorker(PROVISION, settings.redis_url,
                                     {**provision_handlers(ctx.db, service),
                                      **move_handlers(ctx.db, moves, settings)},
                                     concurrency=settings.provision_concurrency,
                                     prefix=settings.jobs_prefix))
    ctx.job_workers.append(JobWorker(SCHEDULES, settings.redis_url,
                                     {**schedule_handlers(ctx.db, service, jobs, settings,
                                                          sweeps),
                                      **server_schedule_handlers(pool),
                                      **move_schedule_handlers(ctx.db, moves, settings)},
                                     concurrency=2, prefix=settings.jobs_prefix))
    ctx.schedules += (schedules(sweeps, settings) + server_schedules(sweeps, settings)
                      + move_schedules(sweeps, settings))
    ctx.on_close += [pool.close, backend.close]
