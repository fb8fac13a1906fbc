"""What the provisioner publishes for the admins' KPIs (`GET /internal/admin/stats`,
docs/06-adr/0008): its own figures per period, from its grants.

A grant that was applied and not refunded covers its subscription from `applied_at` to
`new_expires_at`. From that:

* **active subscriptions** at a period's end: subscriptions some grant covers at that instant;
* **churned**: times a subscription's cover ended in the period (and has ended by now) with no
  grant covering that instant, i.e. not renewed before it ran out;
* **paid → active**: of the paid invoices recorded in the period (grants of kind INVOICE, a
  trial too), the share applied on the VPN backend (by now); one refunded before it was
  applied is left out.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from provisioner.models import Grant, Subscription
from runtime.clock import now
from runtime.periods import Periods

COVERING = ("APPLIED", "REFUND_PENDING")
RUNNING = ("ACTIVE", "LIMITED")
FIGURES = ("active_subscriptions", "churned", "paid_grants", "paid_grants_active")


class StatsRepository:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def stats(self, periods: Periods) -> dict:
        """`{series, total}` as `contracts.public.insight.ProvisionerStatsOut`."""
        rows = {p: _empty(p) for p in periods.starts()}
        total = _empty(periods.first)
        await self._active(periods, rows, total)
        for bucket, into in ((periods.bucket, rows), (None, {periods.first: total})):
            await self._counts(periods, bucket, into)
        for row in (*rows.values(), total):
            paid = row["paid_grants"]
            row["paid_to_active_ok_pct"] = (round(100 * row["paid_grants_active"] / paid, 2)
                                            if paid else None)
        return {"series": [{**r, "period": r["period"].isoformat()} for r in rows.values()],
                "total": {**total, "period": total["period"].isoformat()}}

    async def running(self, at) -> int:
        """Subscriptions running at `at` by their current state (the gauge Grafana shows)."""
        return await self.session.scalar(
            sa.select(sa.func.count()).select_from(Subscription)
            .where(Subscription.status.in_(RUNNING), Subscription.expires_at > at))

    async def _active(self, periods: Periods, rows: dict, total: dict) -> None:
        ends = periods.ends()
        active = (sa.select(sa.func.count(sa.distinct(Grant.subscription_id)))
                  .where(_covers(Grant, ends.c.at)).scalar_subquery())
        for period, count in await self.session.execute(sa.select(ends.c.period, active)):
            rows[period]["active_subscriptions"] = count
        total["active_subscriptions"] = rows[periods.starts()[-1]]["active_subscriptions"]

    async def _counts(self, periods: Periods, bucket, into: dict) -> None:
        first = sa.literal(periods.first, sa.Date)

        def group(ts):
            return bucket(ts) if bucket is not None else first

        later = aliased(Grant)
        renewed = sa.exists().where(later.subscription_id == Grant.subscription_id,
                                    _covers(later, Grant.new_expires_at))
        ended = (sa.select(Grant.subscription_id, Grant.new_expires_at)
                 .where(Grant.status.in_(COVERING), Grant.new_expires_at >= periods.since,
                        Grant.new_expires_at < sa.func.least(periods.until, now()), ~renewed)
                 .distinct().subquery("ended"))
        period = group(ended.c.new_expires_at).label("period")
        for p, count in await self.session.execute(
                sa.select(period, sa.func.count()).select_from(ended).group_by(period)):
            into[p]["churned"] = count

        period = group(Grant.created_at).label("period")
        paid = (sa.select(period, sa.func.count(),
                          sa.func.count().filter(Grant.applied_at.is_not(None)))
                .where(Grant.kind == "INVOICE", Grant.created_at >= periods.since,
                       Grant.created_at < periods.until,
                       ~sa.and_(Grant.status == "REFUNDED", Grant.applied_at.is_(None)))
                .group_by(period))
        for p, count, applied in await self.session.execute(paid):
            into[p].update(paid_grants=count, paid_grants_active=applied)


def _covers(grant, at) -> sa.ColumnElement[bool]:
    """`grant` gives its subscription time at the instant `at`."""
    return sa.and_(grant.status.in_(COVERING), grant.applied_at <= at,
                   grant.new_expires_at > at)


def _empty(period) -> dict:
    return {"period": period, **dict.fromkeys(FIGURES, 0)}
