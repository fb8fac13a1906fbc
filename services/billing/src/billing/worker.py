"""The billing worker process: the Telegram-link, identity (referral codes),
provisioning-event and Telegram Stars payment consumers, the `payment_watch` and
`invoice_expiry` schedules, the outbox relay.

(`retention_cleanup` is scheduled by the runtime from `billing.retention.rules`.)
"""

from __future__ import annotations

from billing.config import Settings
from billing.consumers import (
    build_identity_subscription,
    build_provisioning_subscription,
    build_stars_subscription,
    build_subscription,
)
from billing.jobs import PAYMENT_WATCH_QUEUE, watch_handlers
from billing.service import events
from billing.wiring import build_components
from runtime.jobs import JobQueue, JobWorker
from runtime.service import WorkerContext


async def build_worker(ctx: WorkerContext) -> None:
    settings: Settings = ctx.settings  # type: ignore[assignment]
    parts = build_components(settings, ctx.db)
    ctx.outbox = events
    ctx.subscriptions.append(build_subscription(ctx.db))
    ctx.subscriptions.append(build_provisioning_subscription(ctx.db, parts.renewals))
    ctx.subscriptions.append(build_identity_subscription(ctx.db, settings))
    ctx.subscriptions.append(build_stars_subscription(ctx.db, parts.watcher))
    watch = JobQueue(PAYMENT_WATCH_QUEUE, settings.redis_url, settings.jobs_prefix)
    ctx.queues.append(watch)
    ctx.schedules.append((watch, "payment_watch", settings.payment_watch_interval_ms,
                          "payment_watch"))
    ctx.schedules.append((watch, "invoice_expiry", settings.invoice_expiry_interval_ms,
                          "invoice_expiry"))
    # One job at a time: ticks never overlap (overlap would be safe, only wasteful).
    ctx.job_workers.append(JobWorker(PAYMENT_WATCH_QUEUE, settings.redis_url,
                                     watch_handlers(parts.watcher), concurrency=1,
                                     prefix=settings.jobs_prefix))
    ctx.on_close.append(parts.close)
