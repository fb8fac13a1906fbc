"""RabbitMQ: explicit topology, confirmed persistent publishing, and idempotent consumers.

Topology: one durable topic exchange for all integration events; every consumer gets a durable
quorum queue bound to the routing keys it handles, with a delivery limit and a dead-letter
exchange that routes exhausted messages to `<queue>.dlq`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import orjson
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from pydantic import ValidationError

from contracts import Envelope, EventPayload, parse_payload
from runtime.db import is_transient_db_error
from runtime.logging import causation_id, correlation_id, get_logger
from runtime.metrics import MESSAGE_DURATION, MESSAGES_HANDLED

log = get_logger(__name__)

Handler = Callable[[Envelope, EventPayload], Awaitable[None]]


@dataclass
class Subscription:
    """A consumer queue and the handler for each routing key bound to it."""

    queue: str
    handlers: dict[str, Handler] = field(default_factory=dict)

    def on(self, payload_type: type[EventPayload]):
        def register(fn: Handler) -> Handler:
            self.handlers[payload_type.routing_key()] = fn
            return fn

        return register


class Broker:
    def __init__(self, url: str, prefix: str = "", delivery_limit: int = 5, prefetch: int = 50):
        self.url = url
        self.prefix = prefix
        self.delivery_limit = delivery_limit
        self.prefetch = prefetch
        self.connection: AbstractRobustConnection | None = None
        self._publish_channel: aio_pika.abc.AbstractChannel | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None
        self._consumer_tasks: list[asyncio.Task] = []
        self._stopping = False
        self._inflight = 0

    @property
    def exchange_name(self) -> str:
        return f"{self.prefix}events"

    @property
    def dlx_name(self) -> str:
        return f"{self.prefix}events.dlx"

    def queue_name(self, name: str) -> str:
        return f"{self.prefix}{name}"

    async def connect(self, timeout: float = 10) -> None:
        self.connection = await aio_pika.connect_robust(self.url, timeout=timeout)
        self._publish_channel = await self.connection.channel(publisher_confirms=True)
        self._exchange = await self.declare_exchanges(self._publish_channel)

    async def declare_exchanges(self, channel) -> aio_pika.abc.AbstractExchange:
        await channel.declare_exchange(self.dlx_name, aio_pika.ExchangeType.DIRECT, durable=True)
        return await channel.declare_exchange(
            self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
        )

    async def declare_queue(self, channel, name: str, routing_keys: list[str]):
        qname = self.queue_name(name)
        dlq = await channel.declare_queue(
            f"{qname}.dlq", durable=True, arguments={"x-queue-type": "quorum"}
        )
        await dlq.bind(self.dlx_name, routing_key=qname)
        queue = await channel.declare_queue(
            qname,
            durable=True,
            arguments={
                "x-queue-type": "quorum",
                "x-delivery-limit": self.delivery_limit,
                "x-dead-letter-exchange": self.dlx_name,
                "x-dead-letter-routing-key": qname,
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            },
        )
        for key in routing_keys:
            await queue.bind(self.exchange_name, routing_key=key)
        return queue

    async def publish_raw(self, routing_key: str, envelope: dict[str, Any]) -> None:
        """Publish and wait for the broker's confirm; raises if it is not confirmed."""
        assert self._exchange is not None, "connect() first"
        message = aio_pika.Message(
            body=orjson.dumps(envelope),
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=str(envelope.get("event_id")),
            correlation_id=envelope.get("correlation_id"),
            type=routing_key,
        )
        await self._exchange.publish(message, routing_key=routing_key, mandatory=False, timeout=10)

    async def publish(self, envelope: Envelope) -> None:
        await self.publish_raw(envelope.routing_key, envelope.model_dump(mode="json"))

    async def consume(self, sub: Subscription) -> None:
        """Declare the subscription's queue and start handling its messages one by one."""
        assert self.connection is not None, "connect() first"
        channel = await self.connection.channel()
        await channel.set_qos(prefetch_count=self.prefetch)
        await self.declare_exchanges(channel)
        queue = await self.declare_queue(channel, sub.queue, list(sub.handlers))
        await queue.consume(lambda m: self._handle(sub, m))

    async def _handle(self, sub: Subscription, message: AbstractIncomingMessage) -> None:
        started = time.perf_counter()
        key = message.routing_key or ""
        if self._stopping:
            await message.nack(requeue=True)
            return
        self._inflight += 1
        try:
            try:
                envelope = Envelope.model_validate_json(message.body)
                payload = parse_payload(envelope)
                handler = sub.handlers[envelope.routing_key]
            except (ValidationError, KeyError, ValueError) as exc:
                log.error("message_rejected", queue=sub.queue, routing_key=key,
                          error=str(exc)[:500])
                MESSAGES_HANDLED.labels(sub.queue, key, "rejected").inc()
                await message.reject(requeue=False)  # straight to the dead-letter queue
                return
            correlation_id.set(envelope.correlation_id)
            causation_id.set(str(envelope.event_id))
            delay = 0.2
            while True:
                try:
                    await handler(envelope, payload)
                    break
                except Exception as exc:
                    if is_transient_db_error(exc) and not self._stopping:
                        # Infrastructure away: keep the message, retry without spending a delivery.
                        log.warning("message_retry_transient", queue=sub.queue,
                                    error=str(exc)[:300])
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, 5)
                        continue
                    log.exception("message_failed", queue=sub.queue, routing_key=key,
                                  event_id=str(envelope.event_id))
                    MESSAGES_HANDLED.labels(sub.queue, key, "failed").inc()
                    await asyncio.sleep(0.2)
                    await message.nack(requeue=True)  # counts toward the delivery limit
                    return
            await message.ack()
            MESSAGES_HANDLED.labels(sub.queue, key, "ok").inc()
        finally:
            self._inflight -= 1
            MESSAGE_DURATION.labels(sub.queue).observe(time.perf_counter() - started)

    async def drain(self, timeout: float) -> None:
        """Stop taking messages and wait (bounded) for those being handled."""
        self._stopping = True
        deadline = time.monotonic() + timeout
        while self._inflight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    async def queue_depths(self, names: list[str]) -> dict[str, int]:
        assert self.connection is not None
        out = {}
        channel = await self.connection.channel()
        try:
            for name in names:
                q = await channel.declare_queue(self.queue_name(name), passive=True)
                out[name] = q.declaration_result.message_count
        finally:
            await channel.close()
        return out

    async def close(self) -> None:
        if self.connection is not None:
            await self.connection.close()
