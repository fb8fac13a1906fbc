"""The `payment_watch` BullMQ queue of billing: `payment_watch` and `invoice_expiry` jobs."""

from __future__ import annotations

from bullmq import Job

from billing.watch import PaymentWatcher
from runtime.jobs import JobHandler

PAYMENT_WATCH_QUEUE = "payment_watch"


def watch_handlers(watcher: PaymentWatcher) -> dict[str, JobHandler]:
    async def payment_watch(job: Job):
        return await watcher.payment_watch()

    async def invoice_expiry(job: Job):
        return await watcher.invoice_expiry()

    return {"payment_watch": payment_watch, "invoice_expiry": invoice_expiry}

