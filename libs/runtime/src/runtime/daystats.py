"""Closed UTC days' KPI figures kept by each service (docs/06-adr/0008): a `stats_days` table in
the service's own schema, one row per day before today, holding that day's figures as the
service's live definition computes them (JSON: counts and sums, the gauges at the day's end,
whatever a week or a whole range needs to be combined exactly).

A read takes the cached days, computes the missing closed days from the source (contiguous
ranges at once) and stores them, and computes today and later live (never stored). Writes that
change a past day's figures delete that day's rows in their own transaction: database triggers
on the source tables (each service's migration) call `<schema>.stats_days_forget(first, last)`.

The days not closed yet (today, yesterday in its first `GRACE`, and the week ahead a weekly
range ends in) are kept too, as a snapshot in `stats_live`: the worker recomputes them every
`STATS_LIVE_INTERVAL_MS` (`refresh_live`), and a read takes a day's snapshot while it is at
most `LIVE_MAX_AGE` old, else computes the live days and stores what it computed. So a read
costs the cached rows, not a day's worth of source rows, and today's figures are at most
`LIVE_MAX_AGE` behind (a past day's write that changes today's figures, too). A snapshot row
is never read once its day has closed: closed days come from `stats_days` only.

A fill takes the cache's advisory lock exclusively before it reads the source and holds it to
its commit; `stats_days_forget` takes it shared. So a write that commits while a fill is
computing cannot be missed by it: the write waits for the fill to commit and then deletes what
the fill stored, or the fill waits for the write and computes after it. A write touching only
today and later (by the database's clock: every payment, grant and message as it happens)
neither locks nor deletes, so the everyday writes never wait for a fill: a day is stored only
from `GRACE` after its end, and such a write's transaction would have to stay open that long
across midnight (or the clocks differ by that much) for a fill to miss it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncSession

from runtime.clock import now
from runtime.db import Database
from runtime.logging import get_logger
from runtime.periods import Periods

log = get_logger(__name__)

Compute = Callable[[date, date], Awaitable[dict[date, dict]]]
"""The figures of every day from `first` to `last` (both included) from the source."""

DAY = timedelta(days=1)
GRACE = timedelta(hours=1)
LIVE_AHEAD = 7  # the days after today a live snapshot holds: the current week's end and more
LIVE_MAX_AGE = timedelta(minutes=2)


def _day_table(name: str, metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        name, metadata,
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("figures", JSONB, nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False))


def stats_days_table(metadata: sa.MetaData) -> sa.Table:
    """The closed days' figures, kept exact by the source tables' triggers."""
    return _day_table("stats_days", metadata)


def stats_live_table(metadata: sa.MetaData) -> sa.Table:
    """The snapshot of the days not closed yet, renewed by the worker."""
    return _day_table("stats_live", metadata)


def lock_key(table: sa.Table) -> str:
    """The advisory lock's name (`hashtext` of it), shared with the schema's forget function."""
    return f"{table.schema}.stats_days"


def forget_function_sql(schema: str) -> list[str]:
    """`<schema>.stats_days_forget(first, last)`: delete the cached days from `first` to `last`
    (NULL: no end); a NULL `first`, or today or later, forgets nothing (nothing from today on
    is cached, nor can be while the writing transaction is short). For the source tables'
    triggers, with
    `stats_days_forget_all()` for a truncate."""
    return [f"""
CREATE OR REPLACE FUNCTION {schema}.stats_days_forget(first date, last date) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  IF first IS NULL OR first >= (clock_timestamp() AT TIME ZONE 'UTC')::date THEN RETURN; END IF;
  PERFORM pg_advisory_xact_lock_shared(hashtext('{schema}.stats_days'));
  DELETE FROM {schema}.stats_days WHERE day >= first AND (last IS NULL OR day <= last);
END $$""", f"""
CREATE OR REPLACE FUNCTION {schema}.stats_days_forget_all() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_advisory_xact_lock_shared(hashtext('{schema}.stats_days'));
  DELETE FROM {schema}.stats_days;
  RETURN NULL;
END $$"""]


def inserted_function_sql(schema: str, function: str, days: str, where: str = "TRUE") -> str:
    """`<schema>.<function>_inserted()`: for an insert statement (its rows as `inserted`), forget
    once every day from the earliest to the latest its rows touch. `days` is a VALUES list of
    (first, last) day pairs of a row `r` (a NULL last: no end), `where` which rows count. A bulk
    load of past rows (a seed, a restore) costs one delete, not one trigger call a row."""
    return f"""
CREATE OR REPLACE FUNCTION {schema}.{function}_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM {schema}.stats_days_forget(
    min(d.first), CASE WHEN bool_or(d.last IS NULL) THEN NULL ELSE max(d.last) END)
  FROM inserted r CROSS JOIN LATERAL (VALUES {days}) AS d(first, last)
  WHERE d.first IS NOT NULL AND ({where});
  RETURN NULL;
END $$"""


def triggers_sql(schema: str, table: str, function: str, columns: tuple[str, ...]) -> list[str]:
    """Row triggers calling `<schema>.<function>()` on delete and on an update of one of
    `columns`, a statement trigger calling `<function>_inserted()` on insert, and a truncate of
    `table` forgetting every day."""
    changed = " OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in columns)
    return [f"CREATE TRIGGER {table}_stats_days_insert AFTER INSERT ON {schema}.{table}"
            f" REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT"
            f" EXECUTE FUNCTION {schema}.{function}_inserted()",
            f"CREATE TRIGGER {table}_stats_days_delete AFTER DELETE ON {schema}.{table}"
            f" FOR EACH ROW EXECUTE FUNCTION {schema}.{function}()",
            f"CREATE TRIGGER {table}_stats_days_update AFTER UPDATE ON {schema}.{table}"
            f" FOR EACH ROW WHEN ({changed}) EXECUTE FUNCTION {schema}.{function}()",
            f"CREATE TRIGGER {table}_stats_days_truncate AFTER TRUNCATE ON {schema}.{table}"
            f" FOR EACH STATEMENT EXECUTE FUNCTION {schema}.stats_days_forget_all()"]


def drop_triggers_sql(schema: str, table: str) -> list[str]:
    return [f"DROP TRIGGER IF EXISTS {table}_stats_days_{t} ON {schema}.{table}"
            for t in ("insert", "delete", "update", "truncate")]


def utc_day(column: str) -> str:
    """SQL: the UTC day of a timestamptz (for the trigger functions)."""
    return f"({column} AT TIME ZONE 'UTC')::date"


async def days(session: AsyncSession, table: sa.Table, first: date, last: date,
               compute: Compute, live_table: sa.Table | None = None) -> list[dict]:
    """The figures of every day from `first` to `last`, in order: those closed for `GRACE`
    cached, the others (today's, yesterday's in the first hour) from `live_table`'s fresh
    snapshot, else computed (and stored there); computed every time without a `live_table`."""
    # The per-day queries join a generate_series the planner guesses at 1,000 rows, so their
    # estimated costs pass the JIT threshold though they are index lookups: compiling them
    # would cost far more than running them. And the same statements run over a day (today,
    # live) and over a year (a fill): a generic plan, which the plan cache adopts once it looks
    # no worse than the average of the first custom ones, fits one of the two badly.
    await session.execute(sa.text("SET LOCAL jit = off"))
    await session.execute(sa.text("SET LOCAL plan_cache_mode = force_custom_plan"))
    live = (now() - GRACE).date()  # the first day not stored
    figures: dict[date, dict] = {}
    closed = min(last, live - DAY)
    if first <= closed:
        stmt = sa.select(table.c.day, table.c.figures).where(table.c.day.between(first, closed))
        figures.update((d, f) for d, f in await session.execute(stmt))
        gaps = _gaps(first, closed, figures)
        if gaps:
            await session.execute(sa.select(sa.func.pg_advisory_xact_lock(
                sa.func.hashtext(lock_key(table)))))
            for lo, hi in gaps:
                computed = await compute(lo, hi)
                await session.execute(
                    insert(table).values([{"day": d, "figures": f, "computed_at": now()}
                                          for d, f in computed.items()])
                    .on_conflict_do_nothing(index_elements=["day"]))
                figures.update(computed)
    if last >= live:
        lo = max(first, live)
        figures.update(await compute(lo, last) if live_table is None
                       else await _live_days(session, live_table, lo, last, compute))
    return [figures[first + i * DAY] for i in range((last - first).days + 1)]


async def _live_days(session: AsyncSession, table: sa.Table, first: date, last: date,
                     compute: Compute) -> dict[date, dict]:
    """The days from `first` to `last` (none closed) from their snapshot if every one is at
    most `LIVE_MAX_AGE` old, else computed now and stored as the newer snapshot."""
    at = now()
    stmt = sa.select(table.c.day, table.c.figures).where(
        table.c.day.between(first, last), table.c.computed_at >= at - LIVE_MAX_AGE)
    snapshot = dict((d, f) for d, f in await session.execute(stmt))
    if len(snapshot) == (last - first).days + 1:
        return snapshot
    computed = await compute(first, last)
    await _store_live(session, table, computed, at)
    return computed


async def _store_live(session: AsyncSession, table: sa.Table, figures: dict[date, dict],
                      at: datetime) -> None:
    """Upsert the days' snapshot as computed at `at`, keeping a newer one already stored (in
    day order, so two writers never wait on each other's rows in opposite orders)."""
    stmt = insert(table).values([{"day": d, "figures": figures[d], "computed_at": at}
                                 for d in sorted(figures)])
    await session.execute(stmt.on_conflict_do_update(
        index_elements=["day"],
        set_={"figures": stmt.excluded.figures, "computed_at": stmt.excluded.computed_at},
        where=table.c.computed_at < stmt.excluded.computed_at))


async def refresh_live(session: AsyncSession, table: sa.Table, compute: Compute) -> int:
    """The worker's `stats_live_refresh`: compute the days not closed, from the first one to
    `LIVE_AHEAD` days after today, store them as the snapshot and drop the rows of closed
    days; how many days were stored."""
    await session.execute(sa.text("SET LOCAL jit = off"))
    await session.execute(sa.text("SET LOCAL plan_cache_mode = force_custom_plan"))
    at = now()
    first = (at - GRACE).date()
    computed = await compute(first, at.date() + timedelta(days=LIVE_AHEAD))
    await _store_live(session, table, computed, at)
    await session.execute(sa.delete(table).where(table.c.day < first))
    return len(computed)


async def report(session: AsyncSession, table: sa.Table, periods: Periods, compute: Compute,
                 row: Callable[[date, list[dict]], dict],
                 live_table: sa.Table | None = None) -> dict:
    """`{series, total}`: `row` of each period's days and of the whole range's (weeks and the
    total are added up from the days, never computed again)."""
    figures = await days(session, table, periods.first, periods.last, compute, live_table)
    step = periods.step.days
    return {"series": [row(start, figures[i * step:(i + 1) * step])
                       for i, start in enumerate(periods.starts())],
            "total": row(periods.first, figures)}


async def fill(session: AsyncSession, table: sa.Table, first: date, last: date,
               compute: Compute) -> int:
    """Store the closed days from `first` to `last` not cached yet (the daily job); how many
    days were missing."""
    last = min(last, (now() - GRACE).date() - DAY)
    if first > last:
        return 0
    stmt = sa.select(sa.func.count()).where(table.c.day.between(first, last))
    cached = await session.scalar(stmt)
    await days(session, table, first, last, compute)
    return (last - first).days + 1 - cached


class Filler(Protocol):
    """A service's stats repository, as the `stats_days_fill` and `stats_live_refresh` jobs
    use it."""

    async def fill(self, first: date, last: date) -> int: ...

    async def refresh_live(self) -> int: ...


async def fill_recent(db: Database, service: str, repository: Callable[[AsyncSession], Filler],
                      days_back: int, chunk: int = 31) -> int:
    """The `stats_days_fill` job: store the closed days of the last `days_back` days not cached
    yet (yesterday's soon after midnight; those forgotten by writes), oldest first, so each
    chunk starts from the day before it as the chunk before stored it (a gauge such as the
    active subscriptions is then that day's figure plus the changes, not counted from the
    source again), a transaction per `chunk` days so a fill holds the cache's lock only that
    long; how many.

    A statement past the connection's command timeout (a large history on a busy database)
    rolls its chunk back, and the same days are tried again in chunks half as long, down to
    one day: so the fill makes progress where a whole month's statement cannot finish."""
    last = (now() - GRACE).date() - DAY
    start = last - timedelta(days=days_back - 1)
    filled = 0
    while start <= last:
        end = min(last, start + timedelta(days=chunk - 1))
        try:
            async with db.transaction() as s:
                filled += await repository(s).fill(start, end)
        except TimeoutError:
            if chunk == 1:
                raise
            chunk //= 2
            log.warning("stats_days_fill_shorter", service=service, days=chunk)
            continue
        start = end + DAY
    log.info("stats_days_filled", service=service, days=filled)
    return filled


async def refresh_recent(db: Database, service: str,
                         repository: Callable[[AsyncSession], Filler]) -> int:
    """The `stats_live_refresh` job: a new snapshot of the days not closed, in a transaction."""
    async with db.transaction() as s:
        stored = await repository(s).refresh_live()
    log.debug("stats_live_refreshed", service=service, days=stored)
    return stored


def _gaps(first: date, last: date, have: dict[date, dict]) -> list[tuple[date, date]]:
    """The contiguous ranges of days from `first` to `last` missing from `have`."""
    gaps: list[tuple[date, date]] = []
    day = first
    while day <= last:
        if day in have:
            day += DAY
            continue
        start = day
        while day <= last and day not in have:
            day += DAY
        gaps.append((start, day - DAY))
    return gaps
