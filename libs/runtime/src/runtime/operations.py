"""A service administering its own jobs: queue depths, failed jobs, retry, dead letters, replay.

A service declares the BullMQ queues its worker runs and the RabbitMQ consumer queues it reads
(`Operations`), and mounts `operations_router` in its internal API (ADMIN only):

* `GET /internal/admin/ops` → `{jobs, failed_jobs, dead_letters}` (`contracts.public.ops.OpsOut`):
  each queue's job counts, up to 20 of its failed jobs, and up to 100 messages of each consumer
  queue's `<queue>.dlq`.
* `POST /internal/admin/jobs/{queue}/{job_id}/retry`: a failed job back to waiting with a fresh
  attempt budget, or through the service's own retry for that queue when it gives one (the
  provisioner's reopens the failed grant first).
* `POST /internal/admin/dead-letters/{dead_letter_id}/replay`: the message back to the queue it
  died in.

Dead letters are read without consuming them (unacked gets, handed back with a requeue), and a
replay publishes the message to its consumer queue through the default exchange, so only that
consumer sees it again; its inbox makes a replay of something already applied harmless.

Redis and RabbitMQ are connected per call: these are rare admin actions, and an API process
that holds no connection has nothing to close and nothing to go stale. Either being away is a
`ServiceUnavailable`, not a wait.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aio_pika
import orjson
from aio_pika.abc import AbstractConnection, AbstractIncomingMessage
from bullmq import Queue
from fastapi import APIRouter
from redis.asyncio import Redis
from redis.asyncio.retry import Retry as RedisRetry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from contracts.public.ops import OpsOut, ReplayOut, RetryOut
from runtime.deps import Admin
from runtime.errors import Conflict, NotFound, ServiceUnavailable
from runtime.logging import get_logger
from runtime.settings import ServiceSettings

log = get_logger(__name__)

JOB_STATES = ("waiting", "active", "delayed", "failed", "completed")
FAILED_LISTED = 20  # failed jobs listed per queue
REASON_CHARS = 500
MAX_PEEK = 100  # messages read from each dead-letter queue
TIMEOUT = 5.0

# A service's own retry of one failed job of a queue, given the job id; raises `NotFound` or
# `Conflict` as the default does.
Retry = Callable[[str], Awaitable[object]]


class Operations:
    """What an admin sees and does about one service's job queues and dead letters."""

    def __init__(self, settings: ServiceSettings, *, job_queues: Iterable[str] = (),
                 consumer_queues: Iterable[str] = (), retry: Mapping[str, Retry] | None = None):
        self.settings = settings
        self.job_queues = tuple(job_queues)
        self.consumer_queues = tuple(consumer_queues)
        self._retry = dict(retry or {})
        if not set(self._retry) <= set(self.job_queues):
            raise ValueError(f"retry given for queues not declared: "
                             f"{sorted(set(self._retry) - set(self.job_queues))}")

    # ---- jobs ---------------------------------------------------------------------------------
    @asynccontextmanager
    async def _queues(self) -> AsyncIterator[dict[str, Queue]]:
        # One client for all the queues, with short timeouts and no retries (bullmq's own client
        # retries for minutes when Redis is away).
        redis = Redis.from_url(self.settings.redis_url, decode_responses=True,
                               socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT,
                               retry=RedisRetry(NoBackoff(), 0))
        queues = {name: Queue(name, {"connection": redis, "prefix": self.settings.jobs_prefix})
                  for name in self.job_queues}
        try:
            yield queues
        except (RedisError, OSError) as exc:
            log.warning("ops_redis_unavailable", error_type=type(exc).__name__)
            raise ServiceUnavailable("Redis cannot be read right now") from exc
        finally:
            for q in queues.values():
                await q.close()
            await redis.aclose()

    async def jobs(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Each job queue's counts by state, and up to 20 of its failed jobs."""
        counts, failed = [], []
        if not self.job_queues:
            return counts, failed
        async with self._queues() as queues:
            for name, q in queues.items():
                by_state = await q.getJobCounts(*JOB_STATES)
                counts.append({"queue": name, **{s: int(by_state.get(s) or 0)
                                                 for s in JOB_STATES}})
                for job in await q.getFailed(0, FAILED_LISTED - 1):
                    if job is None:  # removed between listing and reading
                        continue
                    failed.append({"queue": name, "id": str(job.id), "name": job.name,
                                   "reason": (job.failedReason or "")[:REASON_CHARS],
                                   "attempts": int(job.attemptsMade or 0)})
        return counts, failed

    async def retry(self, queue: str, job_id: str) -> dict[str, Any]:
        """Retry one failed job; 404 for a queue this service does not run or no such job,
        409 for a job that is not failed."""
        if queue not in self.job_queues:
            raise NotFound(f"This service runs no job queue {queue!r}",
                           {"queue": queue, "reason": "unknown_queue"})
        own = self._retry.get(queue)
        if own is not None:
            await own(job_id)
        else:
            async with self._queues() as queues:
                q = queues[queue]
                job = await q.getJob(job_id)
                if job is None:
                    raise NotFound(f"No job {job_id!r} in {queue!r}", {"queue": queue})
                state = await q.getJobState(job_id)
                if state != "failed":
                    raise Conflict(f"Only failed jobs can be retried (this one is {state})",
                                   {"state": state})
                await job.retry("failed", {"resetAttemptsMade": True})
        log.info("job_retried", queue=queue, job_id=job_id)
        return {"queue": queue, "id": job_id, "retried": True}

    # ---- dead letters -------------------------------------------------------------------------
    @asynccontextmanager
    async def _broker(self) -> AsyncIterator[AbstractConnection]:
        try:
            conn = await aio_pika.connect(self.settings.rabbitmq_url, timeout=TIMEOUT)
        except (aio_pika.exceptions.AMQPError, OSError, TimeoutError) as exc:
            log.warning("ops_rabbitmq_unavailable", error_type=type(exc).__name__)
            raise ServiceUnavailable("RabbitMQ cannot be read right now") from exc
        try:
            yield conn
        finally:
            await conn.close()

    def _dlq(self, queue: str) -> str:
        return f"{self.settings.broker_prefix}{queue}.dlq"

    async def dead_letters(self) -> list[dict[str, Any]]:
        """Up to 100 messages of each consumer queue's dead-letter queue, left where they are."""
        out: list[dict[str, Any]] = []
        if not self.consumer_queues:
            return out
        async with self._broker() as conn:
            for queue in self.consumer_queues:
                out += await self._peek(conn, queue)
        return out

    async def _peek(self, conn: AbstractConnection, queue: str) -> list[dict[str, Any]]:
        ch = await conn.channel()
        try:
            try:
                dlq = await ch.declare_queue(self._dlq(queue), passive=True)
            except aio_pika.exceptions.ChannelClosed:  # never declared: no worker has run yet
                return []
            held = await _take(dlq)
            for msg in held:
                await msg.nack(requeue=True)
            return [_describe(queue, msg) for msg in held]
        finally:
            if not ch.is_closed:
                await ch.close()

    async def replay(self, dead_letter_id: str) -> dict[str, Any]:
        """Send the dead letter with this id (its envelope's `event_id`) back to the queue it
        died in; 404 if none of this service's dead-letter queues holds it."""
        if self.consumer_queues:
            async with self._broker() as conn:
                for queue in self.consumer_queues:
                    if await self._replay_from(conn, queue, dead_letter_id):
                        log.info("dead_letter_replayed", queue=queue, id=dead_letter_id)
                        return {"id": dead_letter_id, "queue": queue, "replayed": True}
        raise NotFound("Dead letter not found", {"id": dead_letter_id})

    async def _replay_from(self, conn: AbstractConnection, queue: str, dead_letter_id: str
                           ) -> bool:
        # Mandatory and raising on return: a copy no queue takes is an error, not a loss.
        ch = await conn.channel(publisher_confirms=True, on_return_raises=True)
        try:
            try:
                dlq = await ch.declare_queue(self._dlq(queue), passive=True)
            except aio_pika.exceptions.ChannelClosed:
                return False
            held = await _take(dlq)
            found = next((m for m in held if _describe(queue, m)["id"] == dead_letter_id), None)
            returned = False
            if found is not None:
                try:
                    await ch.default_exchange.publish(
                        aio_pika.Message(found.body, content_type="application/json",
                                         delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                         message_id=found.message_id, type=found.type),
                        routing_key=f"{self.settings.broker_prefix}{queue}", mandatory=True,
                        timeout=10)
                except aio_pika.exceptions.DeliveryError:
                    returned = True  # its queue is gone: the dead letter stays where it is
                else:
                    await found.ack()  # only once the broker confirmed the copy
            for msg in held:
                if msg is not found or returned:
                    await msg.nack(requeue=True)
            if returned:
                raise Conflict("The queue this message died in takes no messages; it stays a "
                               "dead letter", {"id": dead_letter_id, "queue": queue})
            return found is not None
        finally:
            if not ch.is_closed:
                await ch.close()

    # ---- together -----------------------------------------------------------------------------
    async def overview(self) -> dict[str, Any]:
        counts, failed = await self.jobs()
        return {"jobs": counts, "failed_jobs": failed, "dead_letters": await self.dead_letters()}


async def _take(dlq: aio_pika.abc.AbstractQueue) -> list[AbstractIncomingMessage]:
    """Up to MAX_PEEK messages, unacked: the caller acks or requeues each."""
    held = []
    for _ in range(MAX_PEEK):
        msg = await dlq.get(no_ack=False, fail=False, timeout=TIMEOUT)
        if msg is None:
            break
        held.append(msg)
    return held


def _describe(queue: str, msg: AbstractIncomingMessage) -> dict[str, Any]:
    """A dead letter as an admin sees it; `id` is its envelope's `event_id`."""
    try:
        env = orjson.loads(msg.body)
    except orjson.JSONDecodeError:
        env = {}
    if not isinstance(env, dict):
        env = {}
    headers = msg.headers or {}
    deaths = headers.get("x-death") or []
    reason = deaths[0].get("reason") if deaths and isinstance(deaths[0], dict) else None
    return {
        "id": str(env.get("event_id") or msg.message_id or ""),
        "queue": queue,
        "routing_key": msg.type or headers.get("x-first-death-exchange") or "",
        "event_type": env.get("type"),
        "occurred_at": env.get("occurred_at"),
        "reason": str(reason) if reason else None,
        "delivery_count": int(headers.get("x-delivery-count") or 0),
    }


def operations_router(ops: Operations) -> APIRouter:
    """The service's ops endpoints, ADMIN only (mount it next to the service's own router)."""
    router = APIRouter(prefix="/internal/admin", tags=["operations"])

    @router.get("/ops", response_model=OpsOut)
    async def overview(_: Admin):
        return await ops.overview()

    @router.post("/jobs/{queue}/{job_id}/retry", response_model=RetryOut)
    async def retry_job(queue: str, job_id: str, _: Admin):
        return await ops.retry(queue, job_id)

    @router.post("/dead-letters/{dead_letter_id}/replay", response_model=ReplayOut)
    async def replay(dead_letter_id: str, _: Admin):
        return await ops.replay(dead_letter_id)

    return router
