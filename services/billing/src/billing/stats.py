"""What billing publishes for the admins' KPIs (`GET /internal/admin/stats`, docs/06-adr/0008):
its own figures per period, from its own tables.

* A **paid plan** is an invoice of kind PLAN or RENEWAL with a `paid_at` (PAID, or REFUNDED
  later): top-ups are money on account, counted when spent on a plan; a trial is no payment.
* **Revenue** is the paid plans' `amount_usd` on the day they were paid (refunds are counted
  on their own day, not taken off).
* A customer's first paid plan makes them a **new customer**; every later one is a
  **renewal**. A new customer who had taken a trial before paying is a **trial conversion**.

Every figure is a sum of per-day figures, so a closed UTC day's figures are kept in
`billing.stats_days` (`runtime.daystats`) and weeks and totals are added up from days. The
cache rule (the triggers of migration `a4c7e1f9d2b6`): a plan invoice inserted, deleted, or
changing its `paid_at`, `refunded_at`, `kind`, `user_id` or `amount_usd` forgets the day of
its refund and every day from its payment on (a payment before another of the same customer
turns that one into a renewal); a trial inserted or deleted forgets every day from its
creation on (it makes the customer's next first plan a conversion). In the service's own
writes these are all today's (`paid_at`, `refunded_at` and a trial are stamped now), so
they forget nothing cached.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from billing.models import Invoice, Trial, stats_days, stats_live
from runtime import daystats
from runtime.periods import Periods

PLAN_KINDS = ("PLAN", "RENEWAL")
FIGURES = ("revenue_usd", "paid_invoices", "new_customers", "renewals", "trials",
           "trial_conversions", "refunds")


class StatsRepository:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def stats(self, periods: Periods) -> dict:
        """`{series, total}` as `contracts.public.insight.BillingStatsOut`."""
        return await daystats.report(self.session, stats_days, periods, self.compute, _sum,
                                      stats_live)

    async def fill(self, first: date, last: date) -> int:
        """Store the closed days from `first` to `last` not cached yet; how many."""
        return await daystats.fill(self.session, stats_days, first, last, self.compute)

    async def refresh_live(self) -> int:
        """Store a new snapshot of the days not closed yet; how many days."""
        return await daystats.refresh_live(self.session, stats_live, self.compute)

    async def compute(self, first: date, last: date) -> dict[date, dict]:
        """Each day's figures from `first` to `last` from the invoices and trials (JSON-ready:
        revenue as a decimal string)."""
        periods = Periods(first, (last - first).days + 1, "day")
        out = {first + timedelta(days=i): {**dict.fromkeys(FIGURES, 0), "revenue_usd": "0.00"}
               for i in range(periods.count)}
        day = periods.bucket

        earlier = aliased(Invoice)
        first_plan = ~sa.exists().where(
            earlier.user_id == Invoice.user_id, earlier.kind.in_(PLAN_KINDS),
            earlier.paid_at.is_not(None),
            sa.tuple_(earlier.paid_at, earlier.id) < sa.tuple_(Invoice.paid_at, Invoice.id))
        had_trial = sa.exists().where(Trial.user_id == Invoice.user_id,
                                      Trial.created_at <= Invoice.paid_at)
        period = day(Invoice.paid_at).label("period")
        payments = (sa.select(period, sa.func.sum(Invoice.amount_usd), sa.func.count(),
                              sa.func.count().filter(first_plan),
                              sa.func.count().filter(first_plan, had_trial))
                    .where(Invoice.kind.in_(PLAN_KINDS), Invoice.paid_at >= periods.since,
                           Invoice.paid_at < periods.until)
                    .group_by(period))
        for p, revenue, count, new, converted in await self.session.execute(payments):
            out[p].update(revenue_usd=str(revenue), paid_invoices=count, new_customers=new,
                          renewals=count - new, trial_conversions=converted)

        period = day(Trial.created_at).label("period")
        trials = (sa.select(period, sa.func.count())
                  .where(Trial.created_at >= periods.since, Trial.created_at < periods.until)
                  .group_by(period))
        for p, count in await self.session.execute(trials):
            out[p]["trials"] = count

        period = day(Invoice.refunded_at).label("period")
        refunds = (sa.select(period, sa.func.count())
                   .where(Invoice.kind.in_(PLAN_KINDS), Invoice.refunded_at >= periods.since,
                          Invoice.refunded_at < periods.until)
                   .group_by(period))
        for p, count in await self.session.execute(refunds):
            out[p]["refunds"] = count
        return out


def _sum(period: date, days: list[dict]) -> dict:
    row = {"period": period.isoformat(), **dict.fromkeys(FIGURES, 0),
           "revenue_usd": Decimal("0.00")}
    for d in days:
        for figure in FIGURES:
            row[figure] += Decimal(d[figure]) if figure == "revenue_usd" else d[figure]
    return row
