"""BullMQ job queues: deterministic job ids, retries with exponential backoff, one schedule each."""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bullmq import DelayedError, Job, Queue, Worker

from runtime.db import is_transient_db_error
from runtime.logging import correlation_id, get_logger
from runtime.metrics import JOBS_HANDLED

log = get_logger(__name__)

JobHandler = Callable[[Job], Awaitable[Any]]

DEFAULT_OPTS: dict[str, Any] = {
    "attempts": 8,
    "backoff": {"type": "exponential", "delay": 1000},
    "removeOnComplete": {"age": 3600, "count": 10000},
    "removeOnFail": {"age": 7 * 24 * 3600},
}

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def job_id(*parts: object) -> str:
    """A deterministic job id (BullMQ ids may not contain ':'), so the same work queues once."""
    return "-".join(_UNSAFE.sub("_", str(p)) for p in parts)


class JobQueue:
    def __init__(self, name: str, redis_url: str, prefix: str = "bull"):
        self.name = name
        self.queue = Queue(name, {"connection": redis_url, "prefix": prefix})

    async def enqueue(self, name: str, data: dict[str, Any], *, job_id: str,
                      **opts: Any) -> Job:
        options = {**DEFAULT_OPTS, **opts, "jobId": job_id}
        if correlation_id.get():
            data = {**data, "_correlation_id": correlation_id.get()}
        return await self.queue.add(name, data, options)

    async def schedule(self, scheduler_id: str, every_ms: int, name: str,
                       data: dict[str, Any] | None = None) -> None:
        """One schedule per job in Redis, whichever replica registers it (idempotent upsert)."""
        await self.queue.upsertJobScheduler(
            scheduler_id, {"every": every_ms}, name, data or {},
            {"removeOnComplete": {"count": 100}, "removeOnFail": {"count": 100}, "attempts": 1},
        )

    async def counts(self) -> dict[str, int]:
        return await self.queue.getJobCounts("waiting", "active", "delayed", "failed", "completed")

    async def close(self) -> None:
        await self.queue.close()


def database_away(exc: BaseException) -> bool:
    """The database failed, not the work: the error raised is the driver's, the pool's or a
    socket's. A domain error that merely wraps a socket error (a VPN backend or payment provider
    unreachable) is the work failing, and spends an attempt as usual."""
    raised_by = type(exc).__module__.split(".", 1)[0]
    return ((raised_by in {"asyncpg", "sqlalchemy"} or isinstance(exc, OSError))
            and is_transient_db_error(exc))


class JobWorker:
    """Runs handlers by job name. A job with a retry budget that fails because the database is
    away goes back to the delayed set without spending an attempt (`transient_delay_ms` plus
    jitter), so an outage longer than the backoff cannot mark work as failed."""

    def __init__(self, name: str, redis_url: str, handlers: dict[str, JobHandler],
                 concurrency: int = 10, prefix: str = "bull", transient_delay_ms: int = 2000):
        self.name = name
        self.handlers = handlers
        self.transient_delay_ms = transient_delay_ms
        self.worker = Worker(
            name, self._process,
            {"connection": redis_url, "concurrency": concurrency, "prefix": prefix,
             "autorun": False, "drainDelay": 1, "stalledInterval": 15000, "lockDuration": 30000},
        )
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self.worker.run())

    async def _process(self, job: Job, token: str) -> Any:
        handler = self.handlers.get(job.name)
        if handler is None:
            log.error("job_unknown", queue=self.name, job=job.name)
            JOBS_HANDLED.labels(self.name, job.name, "unknown").inc()
            return None
        correlation_id.set((job.data or {}).get("_correlation_id"))
        started = time.perf_counter()
        try:
            result = await handler(job)
        except Exception as exc:
            if database_away(exc):
                JOBS_HANDLED.labels(self.name, job.name, "transient").inc()
                if (job.opts or {}).get("attempts", 1) > 1 and await self._later(job, token):
                    log.warning("job_deferred", queue=self.name, job=job.name, job_id=job.id,
                                error=str(exc)[:300])
                    raise DelayedError() from exc
            else:
                JOBS_HANDLED.labels(self.name, job.name, "failed").inc()
            log.warning("job_failed", queue=self.name, job=job.name, job_id=job.id,
                        attempt=job.attemptsMade + 1, error=str(exc)[:300])
            raise
        JOBS_HANDLED.labels(self.name, job.name, "ok").inc()
        log.debug("job_done", queue=self.name, job=job.name, seconds=time.perf_counter() - started)
        return result

    async def _later(self, job: Job, token: str) -> bool:
        """Back to the delayed set, attempt not counted; False if that failed too (Redis away)."""
        delay = self.transient_delay_ms * (1 + random.random() / 2)
        try:
            await job.moveToDelayed(int(time.time() * 1000 + delay), token)
        except Exception as exc:
            log.warning("job_defer_failed", queue=self.name, job_id=job.id, error=str(exc)[:200])
            return False
        return True

    async def close(self, timeout: float = 20) -> None:
        try:
            await asyncio.wait_for(self.worker.close(), timeout=timeout)
        except Exception:
            await self.worker.close(force=True)
