"""The telegram worker process: ticket-event consumer, the update pump, notify jobs, sweep,
outbox."""

from __future__ import annotations

from runtime.jobs import JobQueue, JobWorker
from runtime.service import WorkerContext
from telegram import notifications
from telegram.botapi import BotApi
from telegram.config import Settings
from telegram.consumers import build_identity_subscription, build_subscription
from telegram.jobs import NOTIFY, TelegramJobs, notify_handlers, sweep
from telegram.pump import UpdatePump
from telegram.service import Delivery, MirrorService, UpdateService, events


async def build_worker(ctx: WorkerContext) -> None:
    settings: Settings = ctx.settings  # type: ignore[assignment]
    bot = BotApi(settings.api_base, settings.bot_token)
    jobs = TelegramJobs(JobQueue(NOTIFY, settings.redis_url, settings.jobs_prefix))
    ctx.queues += [jobs.notify]
    ctx.outbox = events
    ctx.subscriptions.append(build_subscription(ctx.db, MirrorService(settings), jobs))
    updates = UpdateService(settings)
    ctx.subscriptions.append(notifications.build_subscription(ctx.db, jobs, settings.app_base_url,
                                                              updates.shop.api))
    ctx.subscriptions.append(build_identity_subscription(ctx.db))
    delivery = Delivery(ctx.db, bot, settings)
    ctx.job_workers.append(JobWorker(NOTIFY, settings.redis_url,
                                     notify_handlers(delivery, settings.max_retry_after_wait),
                                     concurrency=settings.notify_concurrency,
                                     prefix=settings.jobs_prefix))
    pump = UpdatePump(ctx.db, updates, jobs)

    async def update_pump():
        await pump.run()

    async def sweeper():
        await sweep(ctx.db, jobs)

    ctx.background += [update_pump, sweeper]
    ctx.on_close.append(bot.close)
    ctx.on_close.append(updates.shop.api.close)
