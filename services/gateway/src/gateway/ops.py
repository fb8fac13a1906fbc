"""Operations view for admins: job queue depths, failed jobs, dead-lettered messages, replay.

Dead letters are read from each consumer's `<queue>.dlq` without consuming them (unacked gets
are returned), and a replay sends the message back to the queue it died in (the inbox makes a
replay of something already applied harmless).
"""

from __future__ import annotations

from typing import Any

import aio_pika
import orjson
from bullmq import Queue

from gateway.config import Settings
from runtime.errors import NotFound
from runtime.logging import get_logger

log = get_logger(__name__)

MAX_PEEK = 100


class Ops:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.prefix = settings.broker_prefix
        self._queues = {name: Queue(name, {"connection": settings.redis_url,
                                           "prefix": settings.jobs_prefix})
                        for name in settings.ops_job_queues}

    async def _connect(self) -> aio_pika.abc.AbstractConnection:
        return await aio_pika.connect(self.settings.rabbitmq_url, timeout=5)

    async def overview(self) -> dict[str, Any]:
        jobs = []
        failed = []
        for name, q in self._queues.items():
            counts = await q.getJobCounts("waiting", "active", "delayed", "failed", "completed")
            jobs.append({"queue": name, **{k: int(v or 0) for k, v in counts.items()}})
            for job in await q.getFailed(0, 19):
                if job is None:
                    continue
                failed.append({"queue": name, "id": job.id, "name": job.name,
                               "reason": (job.failedReason or "")[:500],
                               "attempts": job.attemptsMade})
        return {"jobs": jobs, "failed_jobs": failed, "dead_letters": await self.dead_letters()}

    async def dead_letters(self) -> list[dict[str, Any]]:
        out = []
        conn = await self._connect()
        try:
            for queue in self.settings.ops_consumer_queues:
                out += await self._peek(conn, queue)
        finally:
            await conn.close()
        return out

    async def _peek(self, conn, queue: str) -> list[dict[str, Any]]:
        ch = await conn.channel()
        try:
            try:
                dlq = await ch.declare_queue(f"{self.prefix}{queue}.dlq", passive=True)
            except aio_pika.exceptions.ChannelClosed:
                return []
            items, held = [], []
            for _ in range(MAX_PEEK):
                msg = await dlq.get(no_ack=False, fail=False, timeout=5)
                if msg is None:
                    break
                held.append(msg)
                items.append(_describe(queue, msg))
            for msg in held:
                await msg.nack(requeue=True)
            return items
        finally:
            if not ch.is_closed:
                await ch.close()

    async def replay(self, dead_letter_id: str) -> dict[str, Any]:
        conn = await self._connect()
        try:
            for queue in self.settings.ops_consumer_queues:
                ch = await conn.channel(publisher_confirms=True)
                try:
                    try:
                        dlq = await ch.declare_queue(f"{self.prefix}{queue}.dlq", passive=True)
                    except aio_pika.exceptions.ChannelClosed:
                        continue
                    held, found = [], None
                    for _ in range(MAX_PEEK):
                        msg = await dlq.get(no_ack=False, fail=False, timeout=5)
                        if msg is None:
                            break
                        if found is None and _describe(queue, msg)["id"] == dead_letter_id:
                            found = msg
                        else:
                            held.append(msg)
                    if found is not None:
                        await ch.default_exchange.publish(
                            aio_pika.Message(found.body, content_type="application/json",
                                             delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                             message_id=found.message_id, type=found.type),
                            routing_key=f"{self.prefix}{queue}", timeout=10)
                        await found.ack()
                    for msg in held:
                        await msg.nack(requeue=True)
                    if found is not None:
                        log.info("dead_letter_replayed", queue=queue, id=dead_letter_id)
                        return {"id": dead_letter_id, "queue": queue, "replayed": True}
                finally:
                    if not ch.is_closed:
                        await ch.close()
        finally:
            await conn.close()
        raise NotFound("Dead letter not found")

    async def retry_job(self, queue: str, job_id: str) -> dict[str, Any]:
        q = self._queues.get(queue)
        job = await q.getJob(job_id) if q else None
        if job is None or await q.getJobState(job_id) != "failed":
            raise NotFound("Failed job not found")
        await job.retry("failed")
        return {"queue": queue, "id": job_id, "retried": True}

    async def close(self) -> None:
        for q in self._queues.values():
            await q.close()


def _describe(queue: str, msg) -> dict[str, Any]:
    try:
        env = orjson.loads(msg.body)
    except orjson.JSONDecodeError:
        env = {}
    deaths = (msg.headers or {}).get("x-death") or []
    reason = deaths[0].get("reason") if deaths and isinstance(deaths[0], dict) else None
    return {
        "id": str(env.get("event_id") or msg.message_id or ""),
        "queue": queue,
        "routing_key": msg.type or (msg.headers or {}).get("x-first-death-exchange") or "",
        "event_type": env.get("type"),
        "occurred_at": env.get("occurred_at"),
        "reason": str(reason) if reason else None,
        "delivery_count": int((msg.headers or {}).get("x-delivery-count") or 0),
    }
