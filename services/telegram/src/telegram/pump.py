"""The update pump: the worker processes stored webhook updates straight from `received_updates`.

The webhook stores each update once and NOTIFYs; the stored row is the queue, so there is no
job per update. The pump claims the due unprocessed updates in `update_id` order (`FOR UPDATE
SKIP LOCKED`, so replicas share the work) and handles a batch in one transaction. An update
whose handling fails is set aside alone (the batch is redone with a savepoint per update) and
retried later with backoff (`attempts`, `retry_at`, `last_error`); the database being away
rolls the batch back and the pump retries it. Outgoing messages the updates produced are
queued on `notify` after commit (the sweep re-queues them if that fails). It wakes on the
NOTIFY and polls every `poll_seconds` as a fallback.
"""

from __future__ import annotations

from datetime import timedelta

from runtime.clock import now
from runtime.db import Database, is_transient_db_error
from runtime.jobs import database_away
from runtime.logging import get_logger
from runtime.notify import NotifiedLoop
from telegram.jobs import TelegramJobs
from telegram.repository import CHANNEL, TelegramRepository
from telegram.service import UpdateService

log = get_logger(__name__)

MAX_BACKOFF_SECONDS = 300


def backoff(attempts: int) -> timedelta:
    """1, 2, 4 … seconds after the 1st, 2nd, 3rd … failure, at most 5 minutes."""
    return timedelta(seconds=min(2 ** max(attempts - 1, 0), MAX_BACKOFF_SECONDS))


class UpdatePump:
    def __init__(self, db: Database, updates: UpdateService, jobs: TelegramJobs,
                 batch: int = 100, poll_seconds: float = 1.0):
        self.db = db
        self.updates = updates
        self.jobs = jobs
        self.batch = batch
        self.loop = NotifiedLoop(db, CHANNEL, poll_seconds, "update_pump")

    async def run(self) -> None:
        def failed(exc: Exception, retry_in: float) -> None:
            level = log.warning if is_transient_db_error(exc) else log.error
            level("update_pump_failed", error=str(exc)[:300], retry_in=retry_in)

        await self.loop.run(self.pump_once, self.batch, failed)

    async def pump_once(self) -> int:
        """Handle one batch of due updates; returns how many were claimed.

        The batch runs in one transaction. If an update fails, the batch is rolled back and run
        again with each update in its own savepoint, so only the failing one is set aside
        (savepoints cost two round trips per update, so they are used only when needed)."""
        try:
            claimed, outgoing = await self._pass(isolate=False)
        except Exception as exc:
            if database_away(exc):
                raise  # the whole batch is retried once the database is back
            claimed, outgoing = await self._pass(isolate=True)
        if outgoing:
            try:
                await self.jobs.enqueue_outgoing([(oid, None) for oid in outgoing])
            except Exception as exc:  # Redis away: the sweep re-queues pending outgoing rows
                log.warning("update_outgoing_enqueue_failed", error=str(exc)[:200])
        return claimed

    async def _pass(self, *, isolate: bool) -> tuple[int, list[int]]:
        outgoing: list[int] = []
        async with self.db.transaction() as s:
            repo = TelegramRepository(s)
            claimed = await repo.claim_updates(now(), self.batch)
            for row in claimed:
                update_id, payload, attempts = row.update_id, row.payload, row.attempts
                if not isolate:
                    outcome, out = await self.updates.handle(s, update_id, payload)
                    row.processed_at, row.outcome = now(), outcome
                    outgoing += out
                    continue
                try:
                    async with s.begin_nested():
                        outcome, out = await self.updates.handle(s, update_id, payload)
                        row.processed_at, row.outcome = now(), outcome
                        await s.flush()
                except Exception as exc:
                    if database_away(exc):
                        raise
                    attempts += 1
                    await repo.update_failed(update_id, f"{type(exc).__name__}: {exc}",
                                             now() + backoff(attempts))
                    log.error("update_failed", update_id=update_id, attempt=attempts,
                              error=str(exc)[:300])
                    continue
                outgoing += out
        return len(claimed), outgoing
