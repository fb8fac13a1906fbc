"""RabbitMQ through FastStream: the topology, confirmed persistent publishing, and consumers.

Topology, declared by the code: one durable topic exchange for all integration events; every
consumer queue is a durable quorum queue bound to the routing keys it handles, with a delivery
limit and a dead-letter exchange that routes exhausted messages to `<queue>.dlq`.

A `Subscription` names a consumer queue and its handler per contract; the worker turns each into
one FastStream subscriber with one handler per contract, so the AsyncAPI document shows every
queue with the messages it takes. The acknowledgement policy is explicit and the same for every
queue (`AckPolicy.NACK_ON_ERROR`): a handled message is acked; a failed one is nacked back to
its queue, which counts toward the delivery limit and dead-letters it after the last attempt; a
message no handler can take (unknown type, not JSON, a payload its contract refuses) is rejected
at once, straight to the dead-letter queue. The `Delivery` middleware adds what FastStream does
not have: a database outage is retried in place without spending a delivery, and every outcome
is logged and counted.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar
from typing import Any

import orjson
import sqlalchemy as sa
from aio_pika.abc import AbstractRobustConnection
from faststream import BaseMiddleware
from faststream.exceptions import RejectMessage
from faststream.middlewares import AckPolicy
from faststream.rabbit import (
    Channel,
    ExchangeType,
    QueueType,
    RabbitBroker,
    RabbitExchange,
    RabbitQueue,
)
from faststream.rabbit.publisher import RabbitPublisher
from faststream.rabbit.subscriber import RabbitSubscriber
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from contracts import Envelope, Event, EventPayload, registry
from runtime.db import Database, is_transient_db_error
from runtime.inbox import claim
from runtime.logging import causation_id, correlation_id, get_logger
from runtime.metrics import MESSAGE_DURATION, MESSAGES_HANDLED

log = get_logger(__name__)

Handler = Callable[[Envelope, EventPayload], Awaitable[None]]
OnceHandler = Callable[[AsyncSession, Envelope, EventPayload], Awaitable[None]]

ACK_POLICY = AckPolicy.NACK_ON_ERROR
PUBLISH_TIMEOUT_SECONDS = 10

# Set once the handler itself runs: a validation error before that is the message's contract
# refusing it (reject), one after it is the handler failing (nack).
_handler_running: ContextVar[bool] = ContextVar("handler_running", default=False)


class Subscription:
    """A consumer queue and the handler for each contract it takes.

    `on` registers a handler that does its own transactions; `once` one that runs inside a
    transaction in which the event was claimed in the inbox, and only the first time (a
    redelivery is skipped); `claim` is that claim, for handlers that still have work to do for a
    duplicate (queue what a crash after commit may have lost)."""

    def __init__(self, queue: str, *, db: Database | None = None, inbox: sa.Table | None = None,
                 description: str | None = None):
        self.queue = queue
        self.db = db
        self.inbox = inbox
        self.description = description
        self.handlers: dict[str, Handler] = {}

    def on(self, payload_type: type[EventPayload]):
        def register(fn: Handler) -> Handler:
            self.handlers[payload_type.routing_key()] = fn
            return fn

        return register

    def once(self, payload_type: type[EventPayload]):
        def register(fn: OnceHandler) -> Handler:
            if self.db is None or self.inbox is None:
                raise ValueError(f"{self.queue}: `once` needs the subscription's db and inbox")

            @functools.wraps(fn)
            async def handle(env: Envelope, event: EventPayload) -> None:
                async with self.db.transaction() as s:
                    if await self.claim(s, env):
                        await fn(s, env, event)

            return self.on(payload_type)(handle)

        return register

    async def claim(self, session: AsyncSession, env: Envelope) -> bool:
        """Record the event as applied by this queue's consumer; False for a duplicate."""
        if self.inbox is None:
            raise ValueError(f"{self.queue}: no inbox to claim events in")
        return await claim(session, self.inbox, env.event_id, self.queue, env.routing_key)


class Delivery(BaseMiddleware):
    """Per message: correlation ids, retry in place while the database is away, the outcome
    logged and counted, and a message no handler can take rejected at once."""

    def __init__(self, msg: Any, /, *, context: Any, broker: Broker):
        super().__init__(msg, context=context)
        self.broker = broker
        self.started = time.perf_counter()
        self.reached = False  # whether a handler was chosen for the message

    def _queue(self) -> str:
        subscriber = self.context.get_local("handler_")
        return self.broker.short_names.get(subscriber.queue.name, subscriber.queue.name)

    def _key(self) -> str:
        return self.msg.type or self.msg.routing_key or ""

    async def consume_scope(self, call_next: Callable[[Any], Awaitable[Any]], msg: Any) -> Any:
        self.reached = True
        queue, key = self._queue(), self._key()
        body = await msg.decode()
        correlation_id.set(body.get("correlation_id"))
        causation_id.set(str(body.get("event_id")))
        delay = 0.2
        while True:
            _handler_running.set(False)
            try:
                result = await call_next(msg)
            except Exception as exc:
                if isinstance(exc, ValidationError) and not _handler_running.get():
                    self._rejected(queue, key, exc)
                    raise RejectMessage() from exc
                if is_transient_db_error(exc) and not self.broker.stopping:
                    # Infrastructure away: keep the message, retry without spending a delivery.
                    log.warning("message_retry_transient", queue=queue, error=str(exc)[:300])
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5)
                    continue
                log.exception("message_failed", queue=queue, routing_key=key,
                              event_id=str(body.get("event_id")))
                MESSAGES_HANDLED.labels(queue, key, "failed").inc()
                await asyncio.sleep(0.2)  # then nacked: counts toward the delivery limit
                raise
            MESSAGES_HANDLED.labels(queue, key, "ok").inc()
            return result

    async def after_processed(self, exc_type=None, exc_val=None, exc_tb=None) -> bool:
        queue = self._queue()
        MESSAGE_DURATION.labels(queue).observe(time.perf_counter() - self.started)
        if exc_val is None or self.reached or not isinstance(exc_val, Exception):
            return False
        # Raised before any handler was chosen: none of this queue's takes it, or it is not JSON.
        self._rejected(queue, self._key(), exc_val)
        await self.msg.reject(requeue=False)  # settles it, so the ack policy leaves it alone
        return True

    @staticmethod
    def _rejected(queue: str, key: str, exc: BaseException) -> None:
        log.error("message_rejected", queue=queue, routing_key=key, error=str(exc)[:500])
        MESSAGES_HANDLED.labels(queue, key, "rejected").inc()


def _for_type(routing_key: str) -> Callable[[Any], Awaitable[bool]]:
    """A filter taking the messages whose envelope is of this contract."""

    async def matches(msg: Any) -> bool:
        body = await msg.decode()
        return (isinstance(body, dict)
                and f"{body.get('type')}.v{body.get('version')}" == routing_key)

    return matches


def _typed(fn: Handler, payload_type: type[EventPayload]) -> Callable[..., Awaitable[None]]:
    """The handler as FastStream calls it: one argument, the envelope with its typed payload
    (what FastStream validates the body against and documents)."""

    async def handle(event: Any) -> None:
        _handler_running.set(True)
        await fn(event, event.payload)

    handle.__annotations__ = {"event": Event[payload_type], "return": None}
    handle.__name__ = getattr(fn, "__name__", "handle")
    handle.__qualname__ = handle.__name__
    handle.__doc__ = fn.__doc__
    return handle


class Broker:
    """The service's RabbitMQ: its topology, its publishers and its consumers."""

    def __init__(self, url: str, prefix: str = "", delivery_limit: int = 5, prefetch: int = 50,
                 *, service: str | None = None, graceful_timeout: float = 15.0):
        self.prefix = prefix
        self.delivery_limit = delivery_limit
        self.service = service
        self.graceful_timeout = graceful_timeout
        self.stopping = False
        self.short_names: dict[str, str] = {}
        self.subscriptions: list[Subscription] = []
        self._publishers: dict[str, RabbitPublisher] = {}
        self.exchange = RabbitExchange(self.exchange_name, type=ExchangeType.TOPIC,
                                       durable=True)
        self.dlx = RabbitExchange(self.dlx_name, type=ExchangeType.DIRECT, durable=True)
        self.rabbit = RabbitBroker(
            url,
            # Confirms on: a publish returns once the broker has the message; a mandatory one
            # that no queue takes raises instead of vanishing.
            default_channel=Channel(prefetch_count=prefetch, publisher_confirms=True,
                                    on_return_raises=True),
            middlewares=[functools.partial(Delivery, broker=self)],
            ack_policy=ACK_POLICY,
            app_id=service,
            # FastStream's own per-message lines are debug; outcomes are logged by `Delivery`.
            logger=logging.getLogger("faststream"), log_level=logging.DEBUG,
            graceful_timeout=graceful_timeout, timeout=10,
        )

    @property
    def exchange_name(self) -> str:
        return f"{self.prefix}events"

    @property
    def dlx_name(self) -> str:
        return f"{self.prefix}events.dlx"

    def queue_name(self, name: str) -> str:
        return f"{self.prefix}{name}"

    @property
    def connection(self) -> AbstractRobustConnection:
        """The underlying aio-pika connection (for administrative reads such as queue depths)."""
        conn = self.rabbit._connection  # FastStream keeps it here; no public accessor
        assert conn is not None, "connect() first"
        return conn

    def consumer_queue(self, name: str, routing_key: str = "") -> RabbitQueue:
        qname = self.queue_name(name)
        self.short_names[qname] = name
        return RabbitQueue(
            qname, queue_type=QueueType.QUORUM, durable=True, routing_key=routing_key,
            arguments={
                "x-delivery-limit": self.delivery_limit,
                "x-dead-letter-exchange": self.dlx_name,
                "x-dead-letter-routing-key": qname,
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            },
        )

    def dead_letter_queue(self, name: str) -> RabbitQueue:
        qname = self.queue_name(name)
        return RabbitQueue(f"{qname}.dlq", queue_type=QueueType.QUORUM, durable=True,
                           routing_key=qname)

    # ---- declaring --------------------------------------------------------------------------
    def subscribe(self, sub: Subscription) -> RabbitSubscriber:
        """Register the subscription's consumer (started by `start`, or at once if running)."""
        keys = list(sub.handlers)
        subscriber = self.rabbit.subscriber(
            self.consumer_queue(sub.queue, keys[0] if keys else ""), self.exchange,
            ack_policy=ACK_POLICY, title=sub.queue,
            description=" ".join(filter(None, [f"Consumed by {self.service}.", sub.description])))
        for key, fn in sub.handlers.items():
            subscriber(_typed(fn, registry[key]), filter=_for_type(key))
        self.subscriptions.append(sub)
        return subscriber

    def publisher(self, payload_type: type[EventPayload]) -> RabbitPublisher:
        """The publisher of one contract: persistent, confirmed, to the events exchange. Not
        mandatory: an event nobody consumes yet is not an error."""
        key = payload_type.routing_key()
        if key not in self._publishers:
            self._publishers[key] = self.rabbit.publisher(
                exchange=self.exchange, routing_key=key, persist=True, mandatory=False,
                timeout=PUBLISH_TIMEOUT_SECONDS, schema=Event[payload_type], title=key,
                description=" ".join(filter(None, [f"Published by {self.service}.",
                                                   payload_type.__doc__])))
        return self._publishers[key]

    def publishes(self, payload_types: Iterable[type[EventPayload]]) -> None:
        for payload_type in payload_types:
            self.publisher(payload_type)

    async def declare(self, name: str, routing_keys: Iterable[str]) -> None:
        """A consumer queue, its dead-letter queue and every binding, as a worker declares them."""
        dlx = await self.rabbit.declare_exchange(self.dlx)
        exchange = await self.rabbit.declare_exchange(self.exchange)
        dlq = await self.rabbit.declare_queue(self.dead_letter_queue(name))
        await dlq.bind(dlx, routing_key=self.queue_name(name))
        queue = await self.rabbit.declare_queue(self.consumer_queue(name))
        for key in routing_keys:
            await queue.bind(exchange, routing_key=key)

    # ---- running ----------------------------------------------------------------------------
    async def connect(self) -> None:
        await self.rabbit.connect()
        await self.rabbit.declare_exchange(self.dlx)
        await self.rabbit.declare_exchange(self.exchange)

    async def start(self) -> None:
        """Declare every subscription's queues and bindings, then start consuming."""
        for sub in self.subscriptions:
            await self.declare(sub.queue, sub.handlers)
        await self.rabbit.start()

    async def consume(self, sub: Subscription) -> None:
        """Subscribe and start consuming at once (the broker is already running)."""
        subscriber = self.subscribe(sub)
        await self.declare(sub.queue, sub.handlers)
        await subscriber.start()

    async def publish_raw(self, routing_key: str, envelope: dict[str, Any]) -> None:
        """Publish an envelope through its contract's publisher and wait for the broker's
        confirm; raises if it is not confirmed."""
        publisher = self._publishers.get(routing_key) or self.publisher(registry[routing_key])
        await publisher.publish(
            orjson.dumps(envelope), content_type="application/json",
            message_id=str(envelope.get("event_id")),
            correlation_id=envelope.get("correlation_id") or str(envelope.get("event_id")),
            message_type=routing_key)

    async def publish(self, envelope: Envelope) -> None:
        await self.publish_raw(envelope.routing_key, envelope.model_dump(mode="json"))

    async def drain(self) -> None:
        """Stop taking messages and wait (up to the graceful timeout) for those being handled;
        what was taken but not started goes back to its queue. Bounded: a channel left broken
        by a broker restart must not keep the process from stopping (an unsettled message is
        delivered again, and the inbox makes that harmless)."""
        self.stopping = True
        stops = asyncio.gather(*(s.stop() for s in self.rabbit.subscribers),
                               return_exceptions=True)
        await self._bounded(stops, self.graceful_timeout + 2, "broker_drain_timed_out")

    @staticmethod
    async def _bounded(work: Awaitable[Any], seconds: float, event: str) -> None:
        try:
            await asyncio.wait_for(work, seconds)
        except TimeoutError:
            log.warning(event, timeout_seconds=seconds)

    async def queue_depths(self, names: list[str]) -> dict[str, int]:
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
        await self._bounded(self.rabbit.stop(), 5, "broker_close_timed_out")
