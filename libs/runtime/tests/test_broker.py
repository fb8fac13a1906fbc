"""The event bus on FastStream against a real RabbitMQ and Postgres: the topology a worker
declares, the outbox relay publishing through its contracts' publishers, the inbox applying an
event once, the acknowledgement policy (a failure spends a delivery and dead-letters after the
last; a message no handler takes goes to the dead-letter queue at once), and a Postgres restart
while a handler runs: retried in place, applied once, no delivery spent."""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import ClassVar

import aio_pika
import asyncpg
import orjson
import pytest
import sqlalchemy as sa

from contracts import make_envelope
from contracts.identity import UserBlockedV1, UserRegisteredV1, UserUnblockedV1
from runtime.broker import Broker, Subscription
from runtime.db import Database
from runtime.inbox import inbox_table
from runtime.metrics import MESSAGES_HANDLED
from runtime.outbox import Outbox, OutboxRelay, outbox_table
from runtime.settings import ServiceSettings
from runtime.testing import await_for

SLOT = os.environ.get("TEST_SLOT", "0")
SCHEMA = f"brokertest{SLOT}"
ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"
QUEUE = "things.identity-events"
REGISTERED = UserRegisteredV1.routing_key()


class BrokerTestSettings(ServiceSettings):
    service_name: ClassVar[str] = SCHEMA
    database_url: str = ADMIN
    db_role: str = "postgres"


metadata = sa.MetaData(schema=SCHEMA)
inbox = inbox_table(metadata)
outbox = outbox_table(metadata)
applied = sa.Table("applied", metadata, sa.Column("user_id", sa.Text, nullable=False))


def registered(user_id: str) -> UserRegisteredV1:
    return UserRegisteredV1(user_id=user_id, email=f"{user_id}@example.com", role="USER",
                            registered_at=datetime.now(UTC))


def counted(outcome: str, key: str = REGISTERED) -> float:
    return MESSAGES_HANDLED.labels(QUEUE, key, outcome)._value.get()


@pytest.fixture
async def db() -> AsyncIterator[Database]:
    async def recreate(create: bool) -> None:
        admin = await asyncpg.connect(ADMIN)  # anew each time: a test may restart Postgres
        try:
            await admin.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')
            if create:
                await admin.execute(f'CREATE SCHEMA "{SCHEMA}"')
        finally:
            await admin.close()

    await recreate(True)
    database = Database(BrokerTestSettings())
    async with database.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield database
    await database.dispose()
    await recreate(False)


@pytest.fixture
async def broker() -> AsyncIterator[Broker]:
    """A broker of a prefix of its own, delivery limit 2; its queues are deleted afterwards."""
    b = Broker(RABBITMQ_URL, f"brokertest{SLOT}-{uuid.uuid4().hex[:8]}.", delivery_limit=2,
               service="things", graceful_timeout=2)
    await b.connect()
    yield b
    ch = await b.connection.channel()
    for name in (QUEUE, f"{QUEUE}.dlq"):
        await ch.queue_delete(b.queue_name(name))
    await ch.exchange_delete(b.exchange_name)
    await ch.exchange_delete(b.dlx_name)
    await b.close()


async def depth(b: Broker, name: str) -> int:
    return (await b.queue_depths([name]))[name]


async def rows(db: Database, table: sa.Table) -> list:
    async with db.transaction() as s:
        return list((await s.execute(sa.select(table))).all())


async def test_the_topology_is_declared_as_documented(broker):
    sub = Subscription(QUEUE)
    for contract in (UserBlockedV1, UserUnblockedV1):
        sub.on(contract)(lambda env, event: asyncio.sleep(0))
    broker.subscribe(sub)
    await broker.start()
    ch = await broker.connection.channel()
    # Declaring again with the documented arguments succeeds only if they are exactly these.
    await ch.declare_queue(broker.queue_name(QUEUE), durable=True, arguments={
        "x-queue-type": "quorum", "x-delivery-limit": 2,
        "x-dead-letter-exchange": broker.dlx_name,
        "x-dead-letter-routing-key": broker.queue_name(QUEUE),
        "x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"})
    await ch.declare_queue(f"{broker.queue_name(QUEUE)}.dlq", durable=True,
                           arguments={"x-queue-type": "quorum"})
    # Both routing keys reach the one queue (nobody consumes them once the subscriber stops).
    await broker.drain()
    exchange = await ch.get_exchange(broker.exchange_name)
    for key in (UserBlockedV1.routing_key(), UserUnblockedV1.routing_key()):
        await exchange.publish(aio_pika.Message(b"{}"), routing_key=key)
    assert await await_for(lambda: _is(depth(broker, QUEUE), 2), message="both bound")


async def _is(value, expected) -> bool:
    return await value == expected


async def test_the_relay_publishes_and_the_inbox_applies_each_event_once(db, broker):
    sub = Subscription(QUEUE, db=db, inbox=inbox)

    @sub.once(UserRegisteredV1)
    async def on_registered(s, env, event):
        await s.execute(sa.insert(applied).values(user_id=event.user_id))

    events = Outbox(outbox, producer="things", publishes=[UserRegisteredV1])
    relay = OutboxRelay(db, events, broker, poll_seconds=0.2)
    broker.subscribe(sub)
    await broker.start()
    ok = counted("ok")
    running = asyncio.create_task(relay.run())
    try:
        async with db.transaction() as s:
            env = await events.add(s, registered("u1"))
        await await_for(lambda: rows(db, applied), message="the event applied")
        # The same envelope delivered again, as after a relay crash before marking it published.
        await broker.publish(env)
        await await_for(lambda: _ok_since(ok, 2), message="the duplicate handled")
        assert [r.user_id for r in await rows(db, applied)] == ["u1"]
        assert len(await rows(db, inbox)) == 1
    finally:
        relay.stop()
        await asyncio.wait_for(running, 10)


async def test_an_outbox_refuses_an_event_it_does_not_publish(db):
    events = Outbox(outbox, producer="things", publishes=[UserRegisteredV1])
    async with db.transaction() as s:
        with pytest.raises(ValueError, match="does not publish"):
            await events.add(s, UserBlockedV1(user_id="u1", blocked_at=datetime.now(UTC)))


async def test_a_failing_handler_spends_its_deliveries_then_is_dead_lettered(broker):
    calls: list[str] = []
    sub = Subscription(QUEUE)

    @sub.on(UserRegisteredV1)
    async def on_registered(env, event):
        calls.append(event.user_id)
        raise RuntimeError("not today")

    broker.subscribe(sub)
    await broker.start()
    failed = counted("failed")
    await broker.publish(make_envelope(registered("u2"), producer="things"))
    await await_for(lambda: _is(depth(broker, f"{QUEUE}.dlq"), 1), message="dead-lettered")
    assert calls == ["u2"] * 3  # the first delivery and two more: the delivery limit is 2
    assert counted("failed") - failed == 3


@pytest.mark.parametrize("body", [
    b"not json",
    orjson.dumps({"event_id": str(uuid.uuid4()), "type": "things.unknown", "version": 1,
                  "occurred_at": "2026-01-01T00:00:00Z", "producer": "x", "payload": {}}),
    orjson.dumps({"event_id": str(uuid.uuid4()), "type": "identity.user.registered",
                  "version": 1, "occurred_at": "2026-01-01T00:00:00Z", "producer": "x",
                  "payload": {"user_id": "u3"}}),  # a payload its contract refuses
], ids=["not-json", "unknown-type", "refused-payload"])
async def test_a_message_no_handler_takes_is_dead_lettered_at_once(broker, body):
    calls: list[str] = []
    sub = Subscription(QUEUE)

    @sub.on(UserRegisteredV1)
    async def on_registered(env, event):
        calls.append(event.user_id)

    broker.subscribe(sub)
    await broker.start()
    failed = counted("failed")
    ch = await broker.connection.channel()
    exchange = await ch.get_exchange(broker.exchange_name)
    await exchange.publish(aio_pika.Message(body, content_type="application/json"),
                           routing_key=REGISTERED)
    await await_for(lambda: _is(depth(broker, f"{QUEUE}.dlq"), 1), message="dead-lettered")
    letter = await (await ch.get_queue(f"{broker.queue_name(QUEUE)}.dlq")).get()
    # Rejected on its first delivery: the broker never counted a redelivery.
    assert letter.headers.get("x-delivery-count") in (None, 0)
    assert letter.body == body
    await letter.ack()
    assert calls == [] and counted("failed") == failed


def restart_postgres() -> None:
    version = subprocess.run(["ls", "/etc/postgresql"], capture_output=True, text=True,
                             check=True).stdout.split()[0]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
                   check=True, timeout=120, capture_output=True)


@pytest.mark.serial
async def test_a_postgres_restart_mid_handler_is_retried_in_place_and_applied_once(db, broker):
    calls: list[str] = []
    sub = Subscription(QUEUE, db=db, inbox=inbox)

    @sub.once(UserRegisteredV1)
    async def on_registered(s, env, event):
        calls.append(event.user_id)
        if len(calls) == 1:  # claimed, not committed: the database goes away under the handler
            await asyncio.to_thread(restart_postgres)
        await s.execute(sa.insert(applied).values(user_id=event.user_id))

    broker.subscribe(sub)
    await broker.start()
    ok, failed = counted("ok"), counted("failed")
    await broker.publish(make_envelope(registered("u4"), producer="things"))
    await await_for(lambda: _ok_since(ok, 1), timeout=90, message="applied")
    assert [r.user_id for r in await rows(db, applied)] == ["u4"]
    assert len(await rows(db, inbox)) == 1
    assert len(calls) >= 2  # retried...
    assert counted("failed") == failed  # ...in place: never nacked, no delivery spent
    assert await depth(broker, QUEUE) == 0 and await depth(broker, f"{QUEUE}.dlq") == 0


async def _ok_since(before: float, n: int) -> bool:
    return counted("ok") - before >= n


def restart_rabbitmq() -> None:
    for action in ("stop_app", "start_app"):
        subprocess.run(["rabbitmqctl", action], check=True, capture_output=True, timeout=120)


@pytest.mark.skipif(subprocess.run(["which", "rabbitmqctl"], capture_output=True).returncode != 0,
                    reason="needs a local rabbitmqctl")
@pytest.mark.serial
async def test_after_a_broker_restart_it_consumes_again_and_stops_in_bounded_time(db):
    """A worker's broker reconnects and takes messages again; and its graceful stop ends
    within its bound even after the restart (it once hung there and never exited)."""
    b = Broker(RABBITMQ_URL, f"brokertest{SLOT}-{uuid.uuid4().hex[:8]}.", delivery_limit=2,
               service="things", graceful_timeout=2)
    seen: list[str] = []
    sub = Subscription(QUEUE, db=db, inbox=inbox)

    @sub.once(UserRegisteredV1)
    async def on_registered(s, env, event):
        seen.append(event.user_id)

    b.subscribe(sub)
    await b.connect()
    await b.start()
    try:
        await asyncio.to_thread(restart_rabbitmq)

        async def delivered() -> bool:
            try:
                await b.publish(make_envelope(registered(f"r{len(seen)}"), producer="things"))
            except Exception:  # still reconnecting
                return False
            await asyncio.sleep(1)
            return bool(seen)

        await await_for(delivered, timeout=90, interval=1, message="consuming again")
    finally:
        started = asyncio.get_running_loop().time()
        await b.drain()
        await b.close()
        took = asyncio.get_running_loop().time() - started
        conn = await aio_pika.connect(RABBITMQ_URL)
        async with conn:
            ch = await conn.channel()
            for name in (QUEUE, f"{QUEUE}.dlq"):
                await ch.queue_delete(b.queue_name(name))
            await ch.exchange_delete(b.exchange_name)
            await ch.exchange_delete(b.dlx_name)
    assert took < b.graceful_timeout + 2 + 5 + 1
