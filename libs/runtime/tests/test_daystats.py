"""The KPIs' days not closed yet: read from the worker's snapshot while it is fresh, computed
(and stored) when it is missing or too old, and never used for a day that has closed."""

from __future__ import annotations

import os
from datetime import date, timedelta
from typing import ClassVar

import pytest
import sqlalchemy as sa

from runtime import daystats
from runtime.clock import now
from runtime.db import Database
from runtime.periods import Periods
from runtime.settings import ServiceSettings

SCHEMA = f"daystats_test_{os.environ.get('TEST_SLOT', '0')}"
meta = sa.MetaData(schema=SCHEMA)
days_table = daystats.stats_days_table(meta)
live_table = daystats.stats_live_table(meta)


class LocalSettings(ServiceSettings):
    service_name: ClassVar[str] = "daystats_test"
    schema_name: ClassVar[str] = "public"
    database_url: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    db_role: str = "postgres"
    db_password: str = "unused-with-trust-auth"


class Source:
    """A stats repository over no table: each day's figure is `version`, and every range it
    is asked to compute is recorded."""

    def __init__(self, version: int = 1):
        self.version = version
        self.asked: list[tuple[date, date]] = []

    async def compute(self, first: date, last: date) -> dict[date, dict]:
        self.asked.append((first, last))
        return {first + timedelta(days=i): {"n": self.version}
                for i in range((last - first).days + 1)}


def row(period: date, days: list[dict]) -> dict:
    return {"period": period.isoformat(), "n": [d["n"] for d in days]}


@pytest.fixture
async def db():
    database = Database(LocalSettings())
    async with database.engine.begin() as c:
        await c.execute(sa.text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        await c.execute(sa.text(f"CREATE SCHEMA {SCHEMA}"))
        await c.run_sync(meta.create_all)
    yield database
    async with database.engine.begin() as c:
        await c.execute(sa.text(f"DROP SCHEMA {SCHEMA} CASCADE"))
    await database.dispose()


async def report(db: Database, source: Source, periods: Periods) -> dict:
    async with db.transaction() as s:
        return await daystats.report(s, days_table, periods, source.compute, row, live_table)


def live_first() -> date:
    return (now() - daystats.GRACE).date()


async def test_live_days_are_computed_once_then_read_from_the_snapshot(db):
    today = now().date()
    source = Source()
    week = Periods.between(today - timedelta(days=13), today)
    first = await report(db, source, week)
    assert source.asked[-1] == (live_first(), today)
    asked = len(source.asked)

    source.version = 2  # the source changed; the snapshot is still fresh
    again = await report(db, source, week)
    assert len(source.asked) == asked, "a fresh snapshot is read, not computed again"
    assert again == first
    assert again["total"]["n"][-1] == 1


async def test_a_snapshot_older_than_its_age_is_computed_again_and_replaced(db):
    today = now().date()
    source = Source()
    periods = Periods.between(today, today)
    await report(db, source, periods)
    async with db.transaction() as s:
        await s.execute(sa.update(live_table).values(
            computed_at=now() - daystats.LIVE_MAX_AGE - timedelta(seconds=1)))
    source.version = 2
    asked = len(source.asked)
    answer = await report(db, source, periods)
    assert len(source.asked) == asked + 1
    assert answer["total"]["n"] == [2]
    async with db.transaction() as s:
        stored = await s.scalar(sa.select(live_table.c.figures).where(live_table.c.day == today))
    assert stored == {"n": 2}


async def test_the_refresh_covers_the_week_ahead_and_drops_closed_days(db):
    today = now().date()
    old = today - timedelta(days=5)
    async with db.transaction() as s:
        await s.execute(sa.insert(live_table).values(day=old, figures={"n": 99},
                                                     computed_at=now()))
    source = Source(version=3)
    async with db.transaction() as s:
        stored = await daystats.refresh_live(s, live_table, source.compute)
    last = today + timedelta(days=daystats.LIVE_AHEAD)
    assert source.asked == [(live_first(), last)]
    assert stored == (last - live_first()).days + 1
    async with db.transaction() as s:
        kept = set(await s.scalars(sa.select(live_table.c.day)))
    assert old not in kept and min(kept) == live_first() and max(kept) == last

    # a range ending in the week ahead (a weekly one) is read whole from the refresh
    reader = Source(version=4)
    ahead = Periods.between(today, today + timedelta(days=6))
    answer = await report(db, reader, ahead)
    assert reader.asked == []
    assert answer["total"]["n"] == [3] * 7


async def test_a_closed_day_never_comes_from_the_snapshot(db):
    closed = live_first() - timedelta(days=3)
    async with db.transaction() as s:
        await s.execute(sa.insert(live_table).values(day=closed, figures={"n": 99},
                                                     computed_at=now()))
    source = Source(version=5)
    answer = await report(db, source, Periods.between(closed, closed))
    assert answer["total"]["n"] == [5]
    assert source.asked == [(closed, closed)]
    async with db.transaction() as s:
        cached = await s.scalar(sa.select(days_table.c.figures).where(days_table.c.day == closed))
    assert cached == {"n": 5}


async def test_without_a_live_table_the_live_days_are_computed_every_time(db):
    today = now().date()
    source = Source()
    for _ in range(2):
        async with db.transaction() as s:
            await daystats.report(s, days_table, Periods.between(today, today), source.compute,
                                  row)
    assert source.asked == [(today, today)] * 2


async def test_a_fill_past_the_command_timeout_goes_on_in_shorter_chunks(db):
    """A month's statement that times out is tried again as shorter chunks, rolled back first:
    every day of the range ends up stored once, each chunk committed on its own."""
    source = Source()

    class Slow:
        def __init__(self, session):
            self.session = session

        async def fill(self, first: date, last: date) -> int:
            stored = await daystats.fill(self.session, days_table, first, last, source.compute)
            if (last - first).days + 1 > 8:  # what a busy database cannot finish in time
                raise TimeoutError
            return stored

        async def refresh_live(self) -> int:
            return 0

    filled = await daystats.fill_recent(db, "test", Slow, days_back=40, chunk=31)
    last = (now() - daystats.GRACE).date() - daystats.DAY
    async with db.transaction() as s:
        stored = list((await s.execute(sa.select(days_table.c.day)
                                       .order_by(days_table.c.day))).scalars())
    assert filled == 40
    assert stored == [last - timedelta(days=39 - i) for i in range(40)]
    # tried as 31 days (rolled back), 15 (rolled back), then 7 at a time, oldest first
    assert [(b - a).days + 1 for a, b in source.asked[:3]] == [31, 15, 7]
    kept = source.asked[2:]
    assert all((b - a).days + 1 <= 7 for a, b in kept)
    assert [a for a, _ in kept] == sorted(a for a, _ in kept)
    assert kept[0][0] == stored[0] and kept[-1][1] == stored[-1]
