"""The telegram worker process: ticket-event consumer, the update pump, notify jobs, sweep,
broadcasts (their jobs and sweep), outbox."""

from __future__ import annotations

from redis.asyncio import Redis

from runtime.jobs import JobQueue, JobWorker
from runtime.service import WorkerContext
from telegram import broadcasts, notifications
from telegram.botapi import BotApi
from telegram.config import Settings
from telegram.consumers import build_identity_subscription, build_subscription
from telegram.jobs import NOTIFY, TelegramJobs, notify_handlers, sweep
from telegram.pump import UpdatePump
from telegram.service import Delivery, MirrorService, UpdateService, events


async def build_worker(ctx: WorkerContext) -> None:
    settings: Settings = ctx.settings  # type: ignore[assignment]
    bot = BotApi(settings.api_base, settings.bot_token)
    jobs = TelegramJobs(JobQueue(NOTIFY, settings.redis_url, settings.jobs_prefix),
                        settings.card_debounce_seconds)
    ctx.queues += [jobs.notify]
    ctx.outbox = events
    ctx.subscriptions.append(build_subscription(ctx.db, MirrorService(settings), jobs))
    updates = UpdateService(settings)
    ctx.subscriptions.append(notifications.build_subscription(ctx.db, jobs, settings.app_base_url,
                                                              updates.shop.api))
    ctx.subscriptions.append(build_identity_subscription(ctx.db, jobs))
    delivery = Delivery(ctx.db, bot, settings)
    ctx.job_workers.append(JobWorker(NOTIFY, settings.redis_url,
                                     notify_handlers(delivery, settings.max_retry_after_wait,
                                                     jobs),
                                     concurrency=settings.notify_concurrency,
                                     prefix=settings.jobs_prefix))
    broadcast_jobs = JobQueue(broadcasts.QUEUE, settings.redis_url, settings.jobs_prefix)
    ctx.queues.append(broadcast_jobs)
    pacer = broadcasts.Pacer(Redis.from_url(settings.redis_url), settings.broadcast_rate,
                             settings.jobs_prefix)
    sender = broadcasts.Sender(ctx.db, bot, pacer, broadcast_jobs,
                               lanes=settings.broadcast_lanes, lease=settings.broadcast_lease,
                               run_seconds=settings.broadcast_run_seconds,
                               plan_batch=settings.broadcast_plan_batch)
    ctx.job_workers.append(JobWorker(broadcasts.QUEUE, settings.redis_url,
                                     broadcasts.handlers(sender), concurrency=2,
                                     prefix=settings.jobs_prefix))
    pump = UpdatePump(ctx.db, updates, jobs)

    async def update_pump():
        await pump.run()

    async def sweeper():
        await sweep(ctx.db, jobs)

    async def broadcast_sweeper():
        await broadcasts.sweep(ctx.db, broadcast_jobs, settings.broadcast_lease)

    ctx.background += [update_pump, sweeper, broadcast_sweeper]
    ctx.on_close.append(pacer.close)
    ctx.on_close.append(bot.close)
    ctx.on_close.append(updates.shop.api.close)
    ctx.on_close.append(delivery.cards.api.close)
