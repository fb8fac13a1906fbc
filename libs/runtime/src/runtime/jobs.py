"""BullMQ job queues: deterministic job ids, retries with exponential backoff, one schedule each."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bullmq import Job, Queue, Worker

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


class JobWorker:
    """Runs handlers by job name; transient DB errors retry later without failing the job."""

    def __init__(self, name: str, redis_url: str, handlers: dict[str, JobHandler],
                 concurrency: int = 10, prefix: str = "bull"):
        self.name = name
        self.handlers = handlers
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
            outcome = "transient" if is_transient_db_error(exc) else "failed"
            JOBS_HANDLED.labels(self.name, job.name, outcome).inc()
            log.warning("job_failed", queue=self.name, job=job.name, job_id=job.id,
                        attempt=job.attemptsMade + 1, error=str(exc)[:300])
            raise
        JOBS_HANDLED.labels(self.name, job.name, "ok").inc()
        log.debug("job_done", queue=self.name, job=job.name, seconds=time.perf_counter() - started)
        return result

    async def close(self, timeout: float = 20) -> None:
        try:
            await asyncio.wait_for(self.worker.close(), timeout=timeout)
        except Exception:
            await self.worker.close(force=True)
