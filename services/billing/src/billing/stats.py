"""What billing publishes for the admins' KPIs (`GET /internal/admin/stats`, docs/06-adr/0008):
its own figures per period, from its own tables.

* A **paid plan** is an invoice of kind PLAN or RENEWAL with a `paid_at` (PAID, or REFUNDED
  later): top-ups are money on account, counted when spent on a plan; a trial is no payment.
* **Revenue** is the paid plans' `amount_usd` on the day they were paid (refunds are counted
  on their own day, not taken off).
* A customer's first paid plan makes them a **new customer**; every later one is a
  **renewal**. A new customer who had taken a trial before paying is a **trial conversion**.
"""

from __future__ import annotations

from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from billing.models import Invoice, Trial
from runtime.periods import Periods

PLAN_KINDS = ("PLAN", "RENEWAL")
FIGURES = ("revenue_usd", "paid_invoices", "new_customers", "renewals", "trials",
           "trial_conversions", "refunds")


class StatsRepository:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def stats(self, periods: Periods) -> dict:
        """`{series, total}` as `contracts.public.insight.BillingStatsOut`."""
        rows = {p: _empty(p) for p in periods.starts()}
        total = _empty(periods.first)
        for bucket, into in ((periods.bucket, rows), (None, {periods.first: total})):
            await self._fill(periods, bucket, into)
        return {"series": list(rows.values()), "total": total}

    async def _fill(self, periods: Periods, bucket, into: dict) -> None:
        """Add the figures grouped by `bucket` (a period's first day; None: all in one)."""
        first = sa.literal(periods.first, sa.Date)

        def group(ts):
            return bucket(ts) if bucket is not None else first

        paid = (sa.select(Invoice.user_id, Invoice.amount_usd, Invoice.paid_at,
                          sa.func.row_number().over(partition_by=Invoice.user_id,
                                                    order_by=(Invoice.paid_at, Invoice.id)
                                                    ).label("nth"))
                .where(Invoice.kind.in_(PLAN_KINDS), Invoice.paid_at.is_not(None),
                       Invoice.paid_at < periods.until)
                .subquery("paid"))
        had_trial = sa.exists().where(Trial.user_id == paid.c.user_id,
                                      Trial.created_at <= paid.c.paid_at)
        period = group(paid.c.paid_at).label("period")
        payments = (sa.select(period, sa.func.sum(paid.c.amount_usd),
                              sa.func.count(),
                              sa.func.count().filter(paid.c.nth == 1),
                              sa.func.count().filter(paid.c.nth > 1),
                              sa.func.count().filter(paid.c.nth == 1, had_trial))
                    .where(paid.c.paid_at >= periods.since).group_by(period))
        for p, revenue, count, new, renewals, converted in await self.session.execute(payments):
            into[p].update(revenue_usd=revenue or Decimal("0.00"), paid_invoices=count,
                           new_customers=new, renewals=renewals, trial_conversions=converted)

        period = group(Trial.created_at).label("period")
        trials = (sa.select(period, sa.func.count())
                  .where(Trial.created_at >= periods.since, Trial.created_at < periods.until)
                  .group_by(period))
        for p, count in await self.session.execute(trials):
            into[p]["trials"] = count

        period = group(Invoice.refunded_at).label("period")
        refunds = (sa.select(period, sa.func.count())
                   .where(Invoice.kind.in_(PLAN_KINDS), Invoice.refunded_at >= periods.since,
                          Invoice.refunded_at < periods.until)
                   .group_by(period))
        for p, count in await self.session.execute(refunds):
            into[p]["refunds"] = count


def _empty(period) -> dict:
    return {"period": period.isoformat(), **dict.fromkeys(FIGURES, 0),
            "revenue_usd": Decimal("0.00")}
