"""What the tickets service publishes for the admins' KPIs (`GET /internal/admin/stats`,
docs/06-adr/0008): its own figures per period, from its tickets and messages.

* **First response**: the time from a ticket being opened to the first staff (`SUPPORT`)
  message on it (a note is no answer), as `first_response_at` records it, read from the
  messages so tickets answered before that column existed count too; a ticket counts in the
  period of that answer, and the period's figure is the median over those tickets, in whole
  seconds of support hours (`first_response_business_s`, tickets.hours; the whole wait for a
  ticket answered before that column existed).
* **CSAT**: tickets rated in the period (`rated_at`) and their mean score, 2 decimals.
* **Open tickets** at a period's end: opened before it and not closed by then (a ticket closes
  with `closed_at`; one reopened later counts as open from its creation).

A closed UTC day's figures are kept in `tickets.stats_days` (`runtime.daystats`): its counts,
the sum of its ratings, every answered ticket's wait (so a week's or a range's median is
exact) and the open tickets at its end. The cache rule (the triggers of migration
`c6e9a3b1f4d8`): a ticket inserted, deleted (retention) or changing its `created_at`,
`closed_at`, `rated_at`, `rating`, `first_response_at` or `first_response_business_s` forgets
every day from its creation to its close (to now while it is open: a reopened ticket forgets
from its creation on), the day it was rated and the day it was first answered; a staff message
inserted forgets its day on (it may come before the first answer so far), one deleted forgets
its day and the day of the ticket's next staff message.
"""

from __future__ import annotations

import math
from datetime import date, timedelta
from itertools import chain

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import TSTZRANGE
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from runtime import daystats
from runtime.periods import Periods
from tickets.models import Message, Ticket, stats_days, stats_live

COUNTS = ("opened", "closed", "answered", "rated", "rating_sum")


class StatsRepository:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def stats(self, periods: Periods) -> dict:
        """`{series, total}` as `contracts.public.insight.TicketsStatsOut`."""
        return await daystats.report(self.session, stats_days, periods, self.compute, _row,
                                      stats_live)

    async def fill(self, first: date, last: date) -> int:
        """Store the closed days from `first` to `last` not cached yet; how many."""
        return await daystats.fill(self.session, stats_days, first, last, self.compute)

    async def refresh_live(self) -> int:
        """Store a new snapshot of the days not closed yet; how many days."""
        return await daystats.refresh_live(self.session, stats_live, self.compute)

    async def compute(self, first: date, last: date) -> dict[date, dict]:
        """Each day's figures from `first` to `last` from the tickets and messages: its counts,
        `waits` (seconds, each answered ticket's) and `open` (tickets open at its end: the day
        before's, plus the day's changes)."""
        periods = Periods(first, (last - first).days + 1, "day")
        out = {first + timedelta(days=i): {**dict.fromkeys(COUNTS, 0), "waits": [], "open": 0}
               for i in range(periods.count)}
        still_open = await self._open_before(first, periods.since)
        for period, change in await self.session.execute(_open_changes(periods)):
            out[period]["open"] = change
        for d in out.values():
            still_open = d["open"] = still_open + d["open"]

        day = periods.bucket
        for column, figure in ((Ticket.created_at, "opened"), (Ticket.closed_at, "closed")):
            period = day(column).label("period")
            stmt = (sa.select(period, sa.func.count()).select_from(Ticket)
                    .where(column >= periods.since, column < periods.until).group_by(period))
            for p, count in await self.session.execute(stmt):
                out[p][figure] = count

        period = day(Ticket.rated_at).label("period")
        stmt = (sa.select(period, sa.func.count(), sa.func.sum(Ticket.rating))
                .where(Ticket.rated_at >= periods.since, Ticket.rated_at < periods.until)
                .group_by(period))
        for p, count, total in await self.session.execute(stmt):
            out[p].update(rated=count, rating_sum=total)

        # a ticket's first answer is in the range when it has one there and none before it:
        # the first of every answer of the tickets answered in the range
        in_range = aliased(Message)
        answered_in_range = (sa.select(in_range.ticket_id)
                             .where(_answer(in_range), in_range.created_at >= periods.since,
                                    in_range.created_at < periods.until))
        answered = (sa.select(Message.ticket_id, sa.func.min(Message.created_at).label("at"))
                    .where(_answer(Message), Message.ticket_id.in_(answered_in_range))
                    .group_by(Message.ticket_id)
                    .having(sa.func.min(Message.created_at) >= periods.since)
                    .subquery("answered"))
        # in support hours where the ticket recorded them, else the whole wait
        whole = sa.func.extract("epoch", answered.c.at - Ticket.created_at)
        wait = sa.cast(sa.func.coalesce(Ticket.first_response_business_s, whole), sa.Float)
        period = day(answered.c.at).label("period")
        stmt = (sa.select(period, sa.func.array_agg(wait))
                .select_from(answered).join(Ticket, Ticket.id == answered.c.ticket_id)
                .group_by(period))
        for p, waits in await self.session.execute(stmt):
            out[p].update(answered=len(waits), waits=sorted(waits))
        return out


    async def _open_before(self, first: date, at) -> int:
        """The tickets open at `at`, the start of `first`: the day before's cached figure, else
        counted."""
        cached = await self.session.scalar(sa.select(stats_days.c.figures["open"].as_integer())
                                           .where(stats_days.c.day == first - timedelta(days=1)))
        if cached is not None:
            return cached
        return await self.session.scalar(sa.select(sa.func.count()).select_from(Ticket)
                                         .where(open_span(Ticket).contains(at)))


def _open_changes(periods: Periods) -> sa.Select:
    """Per day, how the tickets open at its end differ from those open at its start: only a
    ticket opened or closed in the day can differ, so those are compared."""
    step = sa.cast(sa.literal_column("'1 day'"), sa.Interval)
    series = sa.func.generate_series(periods.since, periods.until - periods.step, step
                                     ).table_valued("start").render_derived()
    days = sa.select(sa.cast(sa.func.timezone("UTC", series.c.start), sa.Date).label("day"),
                     series.c.start, (series.c.start + step).label("end")).subquery("days")
    touched = sa.union(*(
        sa.select(days.c.day, days.c.start, days.c.end, Ticket.id, Ticket.created_at,
                  Ticket.closed_at)
        .join(Ticket, sa.and_(column >= days.c.start, column < days.c.end))
        for column in (Ticket.created_at, Ticket.closed_at))).subquery("touched")

    def is_open(at) -> sa.ColumnElement[int]:
        return sa.cast(sa.and_(touched.c.created_at < at,
                               sa.or_(touched.c.closed_at.is_(None), touched.c.closed_at >= at)),
                       sa.Integer)

    return (sa.select(touched.c.day, sa.func.sum(is_open(touched.c.end) - is_open(touched.c.start)))
            .group_by(touched.c.day))


def open_span(ticket) -> sa.ColumnElement:
    """The instants a ticket is open at, `(created_at, closed_at]` (no end while it is open;
    empty if closed before created), as `ix_tickets_open` indexes it."""
    closed = sa.func.coalesce(ticket.closed_at, sa.literal_column("'infinity'"))
    return sa.func.tstzrange(ticket.created_at, sa.func.greatest(ticket.created_at, closed),
                             sa.literal_column("'(]'"), type_=TSTZRANGE)


def _answer(message) -> sa.ColumnElement[bool]:
    return sa.and_(message.author_role == "SUPPORT", message.kind == "MESSAGE")


def _median(ordered: list[float]) -> float:
    """`percentile_cont(0.5)` of sorted values as Postgres computes it (the same float
    operations)."""
    at = 0.5 * (len(ordered) - 1)
    lo, hi = ordered[math.floor(at)], ordered[math.ceil(at)]
    return lo + (hi - lo) * (at - math.floor(at))


def _row(period: date, days: list[dict]) -> dict:
    counts = {c: sum(d[c] for d in days) for c in COUNTS}
    # each day's waits are stored sorted (a day cached before, in any order: sorted here too),
    # and sorting runs already in order is a merge of them, not a sort of every wait
    waits = sorted(chain.from_iterable(d["waits"] for d in days))
    return {"period": period.isoformat(), "opened": counts["opened"],
            "closed": counts["closed"], "answered": counts["answered"],
            "median_first_response_s": round(_median(waits)) if waits else None,
            "open_tickets": days[-1]["open"], "rated": counts["rated"],
            "csat_avg": (round(counts["rating_sum"] / counts["rated"], 2)
                         if counts["rated"] else None)}
