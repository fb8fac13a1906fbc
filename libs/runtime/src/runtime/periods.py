"""The periods of the admins' KPI series (`GET /admin/kpis`, docs/06-adr/0008): UTC days or
ISO weeks (Monday to Sunday), from a first to a last day, both included.

Every service's internal stats endpoint and the gateway read the same query parameters
(`from`, `to`, `granularity`) through `period_query`, so they agree on what a period is.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Literal

import sqlalchemy as sa
from fastapi import Depends, Query

from runtime.clock import now
from runtime.errors import ValidationFailed

Granularity = Literal["day", "week"]
MAX_PERIODS = 366
DEFAULT_DAYS = 30
# Dates outside these bounds are refused (a period's end must stay a valid date).
EARLIEST, LATEST = date(1970, 1, 1), date(9998, 12, 31)


@dataclass(frozen=True, slots=True)
class Periods:
    """Consecutive periods: the first starts on `first` (a Monday for weeks), `count` of them."""

    first: date
    count: int
    granularity: Granularity

    @classmethod
    def between(cls, start: date | None, end: date | None,
                granularity: Granularity = "day") -> Periods:
        """The periods holding `start` to `end` (defaults: the last 30 days up to today);
        `start` after `end`, a date out of bounds, or more than `MAX_PERIODS` periods, is a
        `ValidationFailed`."""
        for value in (start, end):
            if value is not None and not EARLIEST <= value <= LATEST:
                raise ValidationFailed(f"Dates go from {EARLIEST} to {LATEST}",
                                       {"date": value.isoformat()})
        end = end or now().date()
        start = start or max(EARLIEST, end - timedelta(days=DEFAULT_DAYS - 1))
        if start > end:
            raise ValidationFailed("`from` is after `to`",
                                   {"from": start.isoformat(), "to": end.isoformat()})
        days = 7 if granularity == "week" else 1
        first = start - timedelta(days=start.weekday()) if granularity == "week" else start
        count = (end - first).days // days + 1
        if count > MAX_PERIODS:
            raise ValidationFailed(f"At most {MAX_PERIODS} periods at a time",
                                   {"periods": count, "max": MAX_PERIODS})
        return cls(first, count, granularity)

    @property
    def step(self) -> timedelta:
        return timedelta(days=7 if self.granularity == "week" else 1)

    def starts(self) -> list[date]:
        return [self.first + i * self.step for i in range(self.count)]

    @property
    def last(self) -> date:
        """The last day of the last period."""
        return self.first + self.count * self.step - timedelta(days=1)

    @property
    def since(self) -> datetime:
        """The first period's start, as a UTC instant."""
        return datetime.combine(self.first, time(), UTC)

    @property
    def until(self) -> datetime:
        """The end (excluded) of the last period, as a UTC instant."""
        return self.since + self.count * self.step

    def bucket(self, ts: sa.ColumnElement) -> sa.ColumnElement:
        """The first day (a date) of the period a UTC timestamp column falls in."""
        return sa.cast(sa.func.date_trunc(self.granularity, sa.func.timezone("UTC", ts)),
                       sa.Date)

    def ends(self) -> sa.TableValuedAlias:
        """A table of the periods' starts (`period`, a date) and ends (`at`, excluded, UTC),
        for figures taken at each period's end."""
        step = sa.cast(sa.literal(f"{self.step.days} days"), sa.Interval)
        series = sa.func.generate_series(self.since, self.until - self.step, step
                                         ).table_valued("start").render_derived()
        return sa.select(sa.cast(sa.func.timezone("UTC", series.c.start), sa.Date).label("period"),
                         (series.c.start + step).label("at")).subquery("periods")

    def params(self) -> dict[str, str]:
        """The query parameters that name these periods (for a service's stats endpoint)."""
        return {"from": self.first.isoformat(), "to": self.last.isoformat(),
                "granularity": self.granularity}


async def period_query(start: Annotated[date | None, Query(alias="from")] = None,
                       end: Annotated[date | None, Query(alias="to")] = None,
                       granularity: Granularity = "day") -> Periods:
    return Periods.between(start, end, granularity)


PeriodQuery = Annotated[Periods, Depends(period_query)]
