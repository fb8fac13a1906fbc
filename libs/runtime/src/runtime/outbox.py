"""Transactional outbox: events are rows written in the domain transaction, relayed to RabbitMQ.

The relay takes unpublished rows with `FOR UPDATE SKIP LOCKED` (so several relays can run),
publishes each with publisher confirms and persistent delivery, and marks them published only
after the broker confirmed. Anything that fails is retried on the next pass; consumers are
idempotent through the inbox, so a row published twice after a crash does no harm.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.ext.asyncio import AsyncSession

from contracts import Envelope, EventPayload, make_envelope
from runtime.broker import Broker
from runtime.db import Database
from runtime.logging import causation_id, correlation_id, get_logger
from runtime.metrics import OUTBOX_LAG, OUTBOX_PUBLISHED
from runtime.notify import NotifiedLoop

log = get_logger(__name__)


def outbox_table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        "outbox",
        metadata,
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("event_id", UUID(as_uuid=True), nullable=False, unique=True),
        sa.Column("routing_key", sa.Text, nullable=False),
        sa.Column("envelope", JSONB, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("published_at", sa.DateTime(timezone=True)),
        sa.Index("ix_outbox_unpublished", "id", postgresql_where=sa.text("published_at IS NULL")),
    )


class Outbox:
    """Writes events into the service's outbox table inside the caller's transaction; only
    the contracts it `publishes` (what the service's AsyncAPI document says it sends)."""

    def __init__(self, table: sa.Table, producer: str,
                 publishes: Iterable[type[EventPayload]] = ()):
        self.table = table
        self.producer = producer
        self.publishes = frozenset(publishes)
        self.channel = f"outbox_{table.schema}"
        # One statement per event: the row, and a NOTIFY (delivered at commit time only) that
        # wakes the relay without waiting for its poll. Built once; the envelope is bound as
        # JSON text made by pydantic, so nothing is serialized twice.
        inserted = (
            sa.insert(self.table)
            .values(event_id=sa.bindparam("event_id", type_=self.table.c.event_id.type),
                    routing_key=sa.bindparam("routing_key", type_=sa.Text),
                    envelope=sa.cast(sa.bindparam("envelope", type_=sa.Text), JSONB))
            .returning(self.table.c.id)
            .cte("inserted")
        )
        self._insert = sa.select(sa.func.pg_notify(self.channel, "")).select_from(inserted)
        # Many events in one statement: the rows from arrays (in their order, so the relay
        # publishes them in it), and one NOTIFY however many rows.
        rows = sa.func.unnest(
            sa.bindparam("event_ids", type_=ARRAY(self.table.c.event_id.type)),
            sa.bindparam("routing_keys", type_=ARRAY(sa.Text)),
            sa.bindparam("envelopes", type_=ARRAY(sa.Text)),
        ).table_valued("event_id", "routing_key", "envelope").render_derived()
        inserted_many = (
            sa.insert(self.table)
            .from_select(["event_id", "routing_key", "envelope"],
                         sa.select(rows.c.event_id, rows.c.routing_key,
                                   sa.cast(rows.c.envelope, JSONB)))
            .returning(self.table.c.id)
            .cte("inserted")
        )
        first = sa.select(inserted_many.c.id).limit(1).subquery()
        self._insert_many = sa.select(sa.func.pg_notify(self.channel, "")).select_from(first)

    def _envelope(self, payload: EventPayload) -> Envelope:
        if type(payload) not in self.publishes:
            raise ValueError(f"{self.producer} does not publish {payload.routing_key()}")
        return make_envelope(
            payload,
            producer=self.producer,
            correlation_id=correlation_id.get(),
            causation_id=causation_id.get(),
        )

    async def add(self, session: AsyncSession, payload: EventPayload) -> Envelope:
        env = self._envelope(payload)
        await session.execute(self._insert, {"event_id": env.event_id,
                                             "routing_key": env.routing_key,
                                             "envelope": env.model_dump_json()})
        return env

    async def add_many(self, session: AsyncSession, payloads: Iterable[EventPayload]
                       ) -> list[Envelope]:
        """`add` for many events at once: one statement, rows in the order given."""
        envs = [self._envelope(p) for p in payloads]
        if envs:
            await session.execute(self._insert_many, {
                "event_ids": [e.event_id for e in envs],
                "routing_keys": [e.routing_key for e in envs],
                "envelopes": [e.model_dump_json() for e in envs]})
        return envs


class OutboxRelay:
    """Publishes committed outbox rows until each is confirmed by the broker."""

    def __init__(self, db: Database, outbox: Outbox, broker: Broker, batch: int = 200,
                 poll_seconds: float = 1.0):
        self.db = db
        self.outbox = outbox
        self.broker = broker
        broker.publishes(outbox.publishes)
        self.batch = batch
        self.loop = NotifiedLoop(db, outbox.channel, poll_seconds, "outbox")

    def stop(self) -> None:
        self.loop.stop()

    async def run(self) -> None:
        def failed(exc: Exception, retry_in: float) -> None:
            log.warning("outbox_relay_failed", error=str(exc), retry_in=retry_in)

        await self.loop.run(self.relay_once, self.batch, failed)

    async def relay_once(self) -> int:
        t = self.outbox.table
        async with self.db.transaction() as session:
            rows = (
                await session.execute(
                    sa.select(t.c.id, t.c.routing_key, t.c.envelope, t.c.created_at)
                    .where(t.c.published_at.is_(None))
                    .order_by(t.c.id)
                    .limit(self.batch)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not rows:
                OUTBOX_LAG.labels(self.outbox.producer).set(0)
                return 0
            now = datetime.now(UTC)
            OUTBOX_LAG.labels(self.outbox.producer).set((now - rows[0].created_at).total_seconds())
            await asyncio.gather(
                *(self.broker.publish_raw(r.routing_key, r.envelope) for r in rows)
            )
            await session.execute(
                sa.update(t).where(t.c.id.in_([r.id for r in rows])).values(published_at=now)
            )
        OUTBOX_PUBLISHED.labels(self.outbox.producer).inc(len(rows))
        return len(rows)
