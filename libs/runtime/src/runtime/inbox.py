"""Inbox: the event ids a consumer has applied, written in the handler's own transaction."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import UUID, insert
from sqlalchemy.ext.asyncio import AsyncSession


def inbox_table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        "inbox",
        metadata,
        sa.Column("event_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("consumer", sa.Text, primary_key=True),
        sa.Column("routing_key", sa.Text, nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
    )


async def claim(session: AsyncSession, table: sa.Table, event_id: uuid.UUID, consumer: str,
                routing_key: str) -> bool:
    """Record the event as processed; False when it already was (a duplicate delivery)."""
    result = await session.execute(
        insert(table)
        .values(event_id=event_id, consumer=consumer, routing_key=routing_key)
        .on_conflict_do_nothing()
        .returning(table.c.event_id)
    )
    return result.first() is not None
