"""The outbox relay against a real Postgres: a row committed while a relay pass is running is
published on the NOTIFY, not after the poll interval; events added at once (`add_many`) wake it
the same way and are published in the order given."""

from __future__ import annotations

import asyncio
import os
import time
from typing import ClassVar

import asyncpg
import pytest
import sqlalchemy as sa

from contracts.identity import UserBlockedV1, UserRegisteredV1
from runtime.db import Database
from runtime.outbox import Outbox, OutboxRelay, outbox_table
from runtime.settings import ServiceSettings

SCHEMA = f"relaytest{os.environ.get('TEST_SLOT', '0')}"
ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


class RelaySettings(ServiceSettings):
    service_name: ClassVar[str] = SCHEMA
    database_url: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    db_role: str = "postgres"


class SlowBroker:
    """Records publishes; the first one takes a while, like a broker slow to confirm."""

    def __init__(self) -> None:
        self.published: list[tuple[str, float]] = []

    def publishes(self, payload_types) -> None:
        pass

    async def publish_raw(self, routing_key: str, envelope: dict) -> None:
        if not self.published:
            await asyncio.sleep(0.5)
        self.published.append((envelope["payload"]["user_id"], time.monotonic()))


def event(user_id: str) -> UserRegisteredV1:
    return UserRegisteredV1(user_id=user_id, email=f"{user_id}@example.com", role="USER",
                            registered_at="2026-01-01T00:00:00Z")


async def test_a_row_committed_during_a_pass_is_published_without_waiting_for_the_poll():
    admin = await asyncpg.connect(ADMIN)
    await admin.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')
    await admin.execute(f'CREATE SCHEMA "{SCHEMA}"')
    metadata = sa.MetaData(schema=SCHEMA)
    table = outbox_table(metadata)
    db = Database(RelaySettings())
    async with db.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    outbox = Outbox(table, producer="test", publishes=[UserRegisteredV1])
    broker = SlowBroker()
    relay = OutboxRelay(db, outbox, broker, poll_seconds=30)  # only NOTIFY can wake it soon
    running = asyncio.create_task(relay.run())
    try:
        await asyncio.sleep(0.3)  # listening
        async with db.transaction() as s:
            await outbox.add(s, event("first"))
        await asyncio.sleep(0.2)  # the pass publishing "first" is now running (0.5 s)
        async with db.transaction() as s:
            await outbox.add(s, event("second"))
        committed = time.monotonic()
        deadline = committed + 10
        while len(broker.published) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert [t for t, _ in broker.published] == ["first", "second"]
        assert broker.published[1][1] - committed < 5  # not the 30 s poll
    finally:
        relay.stop()
        await asyncio.wait_for(running, 10)
        await db.dispose()
        await admin.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')
        await admin.close()


async def test_events_added_at_once_are_one_notify_and_published_in_their_order():
    admin = await asyncpg.connect(ADMIN)
    await admin.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')
    await admin.execute(f'CREATE SCHEMA "{SCHEMA}"')
    metadata = sa.MetaData(schema=SCHEMA)
    table = outbox_table(metadata)
    db = Database(RelaySettings())
    async with db.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    outbox = Outbox(table, producer="test", publishes=[UserRegisteredV1])
    broker = SlowBroker()
    relay = OutboxRelay(db, outbox, broker, poll_seconds=30)  # only NOTIFY can wake it soon
    running = asyncio.create_task(relay.run())
    try:
        await asyncio.sleep(0.3)  # listening
        async with db.transaction() as s:
            assert await outbox.add_many(s, []) == []
            with pytest.raises(ValueError):  # not a contract this outbox publishes
                await outbox.add_many(s, [event("x"), UserBlockedV1(
                    user_id="x", blocked_at="2026-01-01T00:00:00Z")])
            envs = await outbox.add_many(s, [event(f"u{i}") for i in range(5)])
        assert len({e.event_id for e in envs}) == 5
        deadline = time.monotonic() + 10
        while len(broker.published) < 5 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert [t for t, _ in broker.published] == [f"u{i}" for i in range(5)]
        async with db.transaction() as s:
            rows = (await s.execute(sa.select(table.c.event_id, table.c.envelope)
                                    .order_by(table.c.id))).all()
        assert [r.event_id for r in rows] == [e.event_id for e in envs]
        assert rows[0].envelope["payload"]["user_id"] == "u0"  # stored as JSON, not text
    finally:
        relay.stop()
        await asyncio.wait_for(running, 10)
        await db.dispose()
        await admin.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')
        await admin.close()
