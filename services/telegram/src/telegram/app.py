"""The telegram API process."""

from __future__ import annotations

from fastapi import FastAPI
from prometheus_client import Counter

from runtime.db import Database
from runtime.jobs import JobQueue
from runtime.operations import Operations, operations_router
from runtime.service import internal_api
from telegram import broadcasts, consumers, notifications
from telegram.botapi import BotApi
from telegram.broadcast_endpoints import router as broadcast_router
from telegram.config import Settings
from telegram.endpoints import router
from telegram.jobs import NOTIFY
from telegram.payments import BillingClient, PreCheckout

WEBHOOK_AUTH_FAILURES = Counter("telegram_webhook_auth_failures_total",
                                "Webhook calls refused for a missing or wrong secret")
UPDATES_DISCARDED = Counter("telegram_updates_discarded_total",
                            "Webhook updates answered 200 but discarded as unusable", ["reason"])


def create_api(settings: Settings) -> FastAPI:
    db = Database(settings)
    # Stars pre-checkout queries are answered from here, right after the webhook stores them.
    bot = BotApi(settings.api_base, settings.bot_token)
    billing = BillingClient(settings.billing_url, settings.internal_signing_key,
                            settings.pre_checkout_billing_timeout)
    broadcast_jobs = JobQueue(broadcasts.QUEUE, settings.redis_url, settings.jobs_prefix)
    app = internal_api(settings, db, readiness={"postgres": db.ping},
                       on_close=[bot.close, billing.close, broadcast_jobs.close],
                       input_guard_exempt={"/internal/webhook"})  # answers 200 to any update
    app.state.pre_checkout = PreCheckout(bot, billing, settings.pre_checkout_billing_timeout)
    app.state.bot = bot  # password-reset links are sent at once, never stored
    app.state.webhook_auth_failures = WEBHOOK_AUTH_FAILURES
    app.state.updates_discarded = UPDATES_DISCARDED
    app.state.broadcasts = broadcasts.BroadcastService(db, broadcast_jobs)
    app.include_router(router)
    app.include_router(broadcast_router)
    app.include_router(operations_router(Operations(
        settings, job_queues=[NOTIFY, broadcasts.QUEUE],
        consumer_queues=[consumers.QUEUE, consumers.IDENTITY_QUEUE, notifications.QUEUE])))
    return app
