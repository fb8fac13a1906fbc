"""The event bus alone, for A/B pairs of `runtime.broker` (run it with each version's code on
PYTHONPATH): the wall time and this process's CPU to publish N confirmed persistent envelopes
(in batches, as the outbox relay does), then to consume them with a handler that does nothing.

`python tests/bench/broker.py [--messages N] [--batch B]` prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from datetime import UTC, datetime

from contracts import make_envelope
from contracts.identity import UserRegisteredV1
from runtime.broker import Broker, Subscription

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"
QUEUE = "bench.identity-events"


async def declare(broker: Broker, keys: list[str]) -> None:
    if hasattr(broker, "declare"):
        await broker.declare(QUEUE, keys)
    else:  # the hand-written broker before FastStream
        channel = await broker.connection.channel()
        await broker.declare_exchanges(channel)
        await broker.declare_queue(channel, QUEUE, keys)


async def run(messages: int, batch: int) -> dict[str, float]:
    broker = Broker(RABBITMQ_URL, f"bench-{uuid.uuid4().hex[:8]}.")
    await broker.connect()
    key = UserRegisteredV1.routing_key()
    await declare(broker, [key])
    envelopes = [make_envelope(UserRegisteredV1(user_id=f"u{i}", email=f"u{i}@example.com",
                                                role="USER", registered_at=datetime.now(UTC)),
                               producer="bench").model_dump(mode="json")
                 for i in range(messages)]
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(0, messages, batch):
        await asyncio.gather(*(broker.publish_raw(key, e) for e in envelopes[i:i + batch]))
    publish_wall, publish_cpu = time.perf_counter() - wall, time.process_time() - cpu

    done = asyncio.Event()
    seen = 0
    sub = Subscription(QUEUE)

    @sub.on(UserRegisteredV1)
    async def on_registered(env, event) -> None:
        nonlocal seen
        seen += 1
        if seen == messages:
            done.set()

    wall, cpu = time.perf_counter(), time.process_time()
    await broker.consume(sub)
    await asyncio.wait_for(done.wait(), 300)
    consume_wall, consume_cpu = time.perf_counter() - wall, time.process_time() - cpu
    channel = await broker.connection.channel()
    for name in (QUEUE, f"{QUEUE}.dlq"):
        await channel.queue_delete(broker.queue_name(name))
    await channel.exchange_delete(broker.exchange_name)
    await channel.exchange_delete(broker.dlx_name)
    await broker.close()
    return {"messages": messages,
            "publish_per_s": round(messages / publish_wall),
            "publish_cpu_us_each": round(publish_cpu / messages * 1e6),
            "consume_per_s": round(messages / consume_wall),
            "consume_cpu_us_each": round(consume_cpu / messages * 1e6)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=200)
    ns = parser.parse_args()
    print(json.dumps(asyncio.run(run(ns.messages, ns.batch))))


if __name__ == "__main__":
    main()
