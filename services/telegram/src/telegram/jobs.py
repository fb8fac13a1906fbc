"""The telegram service's job queue `notify` (sends) and the sweep that re-queues lost sends.

Webhook updates are not jobs: the worker's update pump (`telegram.pump`) processes them
straight from `received_updates`.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta

from bullmq import Job
from bullmq.custom_errors import DelayedError

from runtime.clock import now
from runtime.db import Database
from runtime.jobs import JobQueue, job_id
from runtime.logging import get_logger
from telegram.botapi import TelegramError
from telegram.card import overdue
from telegram.metrics import UPDATES_UNPROCESSED
from telegram.models import Outgoing
from telegram.pacing import MAX_INLINE_WAIT
from telegram.repository import TelegramRepository
from telegram.service import Delivery

log = get_logger(__name__)

NOTIFY = "notify"


class TelegramJobs:
    def __init__(self, notify: JobQueue, card_delay: float = 2.0):
        self.notify = notify
        self.card_delay = card_delay  # TELEGRAM_CARD_DEBOUNCE_SECONDS

    async def enqueue_cards(self, dues: list[tuple[str, datetime]], suffix: str = "") -> None:
        """One `card` job per card and due time (the same due time is the same job: a burst
        of events makes one edit), run when it is due."""
        for ticket_id, due in dues:
            delay = max(0, int((due - now()).total_seconds() * 1000))
            parts = ("card", ticket_id, int(due.timestamp() * 1000)) + ((suffix,) if suffix
                                                                         else ())
            await self.notify.enqueue("card", {"ticket_id": ticket_id}, job_id=job_id(*parts),
                                      delay=delay)

    async def enqueue_outgoing(self, rows: list[tuple[int, str | None]], suffix: str = "") -> None:
        for oid, ticket_id in rows:
            if ticket_id:
                await self.notify.enqueue("deliver_ticket", {"ticket_id": ticket_id},
                                          job_id=job_id("notify", oid, suffix) if suffix
                                          else job_id("notify", oid))
            else:
                await self.notify.enqueue("deliver_one", {"outgoing_id": oid},
                                          job_id=job_id("notify", oid, suffix) if suffix
                                          else job_id("notify", oid))


def notify_handlers(delivery: Delivery, max_inline_wait: int, jobs: TelegramJobs | None = None):
    async def with_retry_after(job: Job, token: str, fn):
        while True:
            try:
                return await fn()
            except TelegramError as exc:
                if not exc.is_retry_after:
                    raise
                wait = int(exc.retry_after or 1)
                log.warning("telegram_retry_after", retry_after=wait, job_id=job.id)
                # our own pacing's wait (a slot ahead) frees the worker's slot sooner
                paced = exc.description.startswith("paced")
                if wait <= (min(max_inline_wait, MAX_INLINE_WAIT) if paced else max_inline_wait):
                    await asyncio.sleep(wait)
                    continue
                await job.moveToDelayed(int(time.time() * 1000) + wait * 1000, token)
                raise DelayedError() from exc

    async def deliver_ticket(job: Job, token: str = ""):
        return await with_retry_after(job, token,
                                      lambda: delivery.deliver_ticket(job.data["ticket_id"]))

    async def deliver_one(job: Job, token: str = ""):
        return await with_retry_after(job, token,
                                      lambda: delivery.deliver_one(int(job.data["outgoing_id"])))

    async def card(job: Job, token: str = ""):
        ticket_id = job.data["ticket_id"]
        edited, again = await with_retry_after(
            job, token, lambda: delivery.cards.refresh(delivery.db, ticket_id))
        if again is not None and jobs is not None:
            await jobs.enqueue_cards([(ticket_id, again)])
        return edited

    return {"deliver_ticket": deliver_ticket, "deliver_one": deliver_one, "card": card}


async def sweep(db: Database, jobs: TelegramJobs, every: float = 5.0, age: float = 10.0) -> None:
    """Re-queue anything whose job was lost (a crash between commit and enqueue, a failed job);
    also samples the unprocessed-update gauge."""
    while True:
        await asyncio.sleep(every)
        try:
            cutoff = now() - timedelta(seconds=age)
            bucket = str(int(time.time() // 30))
            async with db.transaction() as s:
                repo = TelegramRepository(s)
                stale: list[Outgoing] = await repo.stale_outgoing(cutoff)
                pending, failing = await repo.unprocessed_counts()
                cards = await overdue(s, cutoff)
            UPDATES_UNPROCESSED.labels("pending").set(pending)
            UPDATES_UNPROCESSED.labels("failing").set(failing)
            seen: set[str] = set()
            rows = []
            for r in stale:
                key = r.ticket_id or f"one-{r.id}"
                if key not in seen:
                    seen.add(key)
                    rows.append((r.id, r.ticket_id))
            if rows:
                await jobs.enqueue_outgoing(rows, suffix=f"s{bucket}")
                log.info("sweep_requeued", outgoing=len(rows))
            if cards:  # a card due past its time: its job was lost (or failed)
                await jobs.enqueue_cards(cards, suffix=f"s{bucket}")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("sweep_failed", error=str(exc)[:300])
