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
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from runtime.periods import Periods
from tickets.models import Message, Ticket

FIGURES = ("opened", "closed", "answered", "open_tickets", "rated")


class StatsRepository:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def stats(self, periods: Periods) -> dict:
        """`{series, total}` as `contracts.public.insight.TicketsStatsOut`."""
        rows = {p: _empty(p) for p in periods.starts()}
        total = _empty(periods.first)
        ends = periods.ends()
        still_open = (sa.select(sa.func.count()).select_from(Ticket)
                      .where(Ticket.created_at < ends.c.at,
                             sa.or_(Ticket.closed_at.is_(None), Ticket.closed_at >= ends.c.at))
                      .scalar_subquery())
        for period, count in await self.session.execute(sa.select(ends.c.period, still_open)):
            rows[period]["open_tickets"] = count
        total["open_tickets"] = rows[periods.starts()[-1]]["open_tickets"]
        for bucket, into in ((periods.bucket, rows), (None, {periods.first: total})):
            await self._counts(periods, bucket, into)
        return {"series": [{**r, "period": r["period"].isoformat()} for r in rows.values()],
                "total": {**total, "period": total["period"].isoformat()}}

    async def _counts(self, periods: Periods, bucket, into: dict) -> None:
        first = sa.literal(periods.first, sa.Date)

        def group(ts):
            return bucket(ts) if bucket is not None else first

        for column, figure in ((Ticket.created_at, "opened"), (Ticket.closed_at, "closed")):
            period = group(column).label("period")
            stmt = (sa.select(period, sa.func.count()).select_from(Ticket)
                    .where(column >= periods.since, column < periods.until).group_by(period))
            for p, count in await self.session.execute(stmt):
                into[p][figure] = count

        period = group(Ticket.rated_at).label("period")
        stmt = (sa.select(period, sa.func.count(), sa.func.avg(Ticket.rating))
                .where(Ticket.rated_at >= periods.since, Ticket.rated_at < periods.until)
                .group_by(period))
        for p, count, mean in await self.session.execute(stmt):
            into[p].update(rated=count, csat_avg=round(float(mean), 2))

        answered = (sa.select(Message.ticket_id, sa.func.min(Message.created_at).label("at"))
                    .where(Message.author_role == "SUPPORT", Message.kind == "MESSAGE")
                    .group_by(Message.ticket_id)
                    .subquery("answered"))
        # in support hours where the ticket recorded them, else the whole wait
        wait = sa.func.coalesce(Ticket.first_response_business_s,
                                sa.func.extract("epoch", answered.c.at - Ticket.created_at))
        period = group(answered.c.at).label("period")
        stmt = (sa.select(period, sa.func.count(),
                          sa.func.percentile_cont(0.5).within_group(wait))
                .select_from(answered).join(Ticket, Ticket.id == answered.c.ticket_id)
                .where(answered.c.at >= periods.since, answered.c.at < periods.until)
                .group_by(period))
        for p, count, median in await self.session.execute(stmt):
            into[p].update(answered=count, median_first_response_s=round(median))


def _empty(period) -> dict:
    return {"period": period, **dict.fromkeys(FIGURES, 0), "median_first_response_s": None,
            "csat_avg": None}
