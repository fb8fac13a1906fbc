"""Retention rules delete what is due in bounded batches, each its own transaction, and keep
the rest; a second run deletes nothing."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import ClassVar

import pytest
import sqlalchemy as sa

from runtime.db import Database
from runtime.retention import Rule, run_rules
from runtime.settings import ServiceSettings

SLOT = os.environ.get("TEST_SLOT", "0")
meta = sa.MetaData()
single = sa.Table(f"retention_single_{SLOT}", meta,
                  sa.Column("id", sa.Integer, primary_key=True),
                  sa.Column("done_at", sa.DateTime(timezone=True)),
                  sa.Column("kind", sa.Text))
pair = sa.Table(f"retention_pair_{SLOT}", meta,
                sa.Column("consumer", sa.Text, primary_key=True),
                sa.Column("message_id", sa.Integer, primary_key=True),
                sa.Column("done_at", sa.DateTime(timezone=True)))


class LocalSettings(ServiceSettings):
    service_name: ClassVar[str] = "retention_test"
    schema_name: ClassVar[str] = "public"
    database_url: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    db_role: str = "postgres"
    db_password: str = "unused-with-trust-auth"


@pytest.fixture
async def db():
    database = Database(LocalSettings())
    async with database.engine.begin() as c:
        await c.run_sync(meta.drop_all)
        await c.run_sync(meta.create_all)
    yield database
    async with database.engine.begin() as c:
        await c.run_sync(meta.drop_all)
    await database.dispose()


NOW = datetime(2026, 6, 1, tzinfo=UTC)


async def test_due_rows_go_in_batches_and_the_rest_stays(db):
    old, fresh = NOW - timedelta(days=400), NOW - timedelta(days=10)
    async with db.transaction() as s:
        await s.execute(sa.insert(single), [
            {"id": i, "done_at": old if i <= 2345 else fresh,
             "kind": "CLOSED" if i % 5 else "OPEN"} for i in range(1, 3001)])
        await s.execute(sa.insert(pair), [
            {"consumer": f"c{i % 3}", "message_id": i, "done_at": old if i % 2 else None}
            for i in range(1, 1001)])
    rules = [Rule("single_closed", single, "done_at", 365,
                  where=lambda t: t.c.kind == "CLOSED"),
             Rule("pair_done", pair, "done_at", 365)]
    statements: list[tuple[str, tuple]] = []

    @sa.event.listens_for(db.engine.sync_engine, "before_cursor_execute")
    def seen(conn, cursor, statement, parameters, *args):
        if "DELETE FROM" in statement.upper():
            statements.append((statement, tuple(parameters)))

    purged = await run_rules(db, "test", rules, now=NOW, batch=300)
    sa.event.remove(db.engine.sync_engine, "before_cursor_execute", seen)

    old_closed = sum(1 for i in range(1, 2346) if i % 5)
    assert purged == {"single_closed": old_closed, "pair_done": 500}
    # 1,876 rows in batches of 300: 7 batches, the last one short; 500 in 2
    assert len(statements) == (old_closed // 300 + 1) + (500 // 300 + 1)
    # each batch starts after the last key of the one before, in primary-key order: the
    # first from the start, the second after the 300th due id, the pair's after its 300th key
    due_ids = [i for i in range(1, 2346) if i % 5]
    assert len(statements[0][1]) == len(statements[1][1]) - 1
    assert statements[1][1][-3:-2] == (due_ids[299],)
    pair_keys = sorted((f"c{i % 3}", i) for i in range(1, 1001, 2))
    assert statements[-1][1][-4:-2] == pair_keys[299]
    async with db.transaction() as s:
        left = (await s.execute(sa.select(single.c.id, single.c.done_at, single.c.kind))).all()
        pairs = (await s.execute(sa.select(pair.c.message_id, pair.c.done_at))).all()
    assert len(left) == 3000 - old_closed
    assert all(d == fresh or k == "OPEN" for _, d, k in left)
    assert sorted(m for m, _ in pairs) == list(range(2, 1001, 2))
    assert await run_rules(db, "test", rules, now=NOW, batch=300) == {
        "single_closed": 0, "pair_done": 0}


async def test_a_rule_of_zero_days_is_off(db):
    async with db.transaction() as s:
        await s.execute(sa.insert(single), [{"id": 1, "done_at": NOW - timedelta(days=999)}])
    assert await run_rules(db, "test", [Rule("off", single, "done_at", 0)], now=NOW) == {}
    async with db.transaction() as s:
        assert await s.scalar(sa.select(sa.func.count()).select_from(single)) == 1
