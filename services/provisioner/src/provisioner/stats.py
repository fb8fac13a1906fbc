"""What the provisioner publishes for the admins' KPIs (`GET /internal/admin/stats`,
docs/06-adr/0008): its own figures per period, from its grants.

A grant that was applied and not refunded covers its subscription from `applied_at` to
`new_expires_at`. From that:

* **active subscriptions** at a period's end (now, for a period not over yet: a day ahead is
  not a forecast of who will not renew): subscriptions some grant covers at that instant;
* **churned**: times a subscription's cover ended in the period (and has ended by now) with no
  grant covering that instant, i.e. not renewed before it ran out;
* **paid → active**: of the paid invoices recorded in the period (grants of kind INVOICE, a
  trial too), the share applied on the VPN backend (by now); one refunded before it was
  applied is left out.

A closed UTC day's figures (the gauge at its end, the counts in it) are kept in
`provisioning.stats_days` (`runtime.daystats`); a week takes its last day's gauge and adds up
its days' counts. The cache rule (the triggers of migration `b5d8f2a0e3c7`): a grant
inserted, deleted, or changing its `status`, `kind`, `subscription_id`, `created_at`,
`applied_at` or `new_expires_at` forgets the day it was created (paid → active) and, while it
covers (before and after the change), every day from its `applied_at` to its
`new_expires_at` (the gauge, its own end and the ends it renews). So a refund taken back
(REFUND_PENDING → REFUNDED) forgets the days the grant covered, and a grant refunded before it
was applied or applied late forgets the day it was created.
"""

from __future__ import annotations

from datetime import date, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import TSTZRANGE
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from provisioner.models import Grant, Subscription, stats_days, stats_live
from runtime import daystats
from runtime.clock import now
from runtime.periods import Periods

COVERING = ("APPLIED", "REFUND_PENDING")
RUNNING = ("ACTIVE", "LIMITED")
COUNTS = ("churned", "paid_grants", "paid_grants_active")


class StatsRepository:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def stats(self, periods: Periods) -> dict:
        """`{series, total}` as `contracts.public.insight.ProvisionerStatsOut`."""
        return await daystats.report(self.session, stats_days, periods, self.compute, _row,
                                      stats_live)

    async def fill(self, first: date, last: date) -> int:
        """Store the closed days from `first` to `last` not cached yet; how many."""
        return await daystats.fill(self.session, stats_days, first, last, self.compute)

    async def refresh_live(self) -> int:
        """Store a new snapshot of the days not closed yet; how many days."""
        return await daystats.refresh_live(self.session, stats_live, self.compute)

    async def running(self, at) -> int:
        """Subscriptions running at `at` by their current state (the gauge Grafana shows)."""
        return await self.session.scalar(
            sa.select(sa.func.count()).select_from(Subscription)
            .where(Subscription.status.in_(RUNNING), Subscription.expires_at > at))

    async def compute(self, first: date, last: date) -> dict[date, dict]:
        """Each day's figures from `first` to `last` from the grants: the active subscriptions
        at its end (`active`: the day before's, plus the day's changes) and its counts."""
        periods = Periods(first, (last - first).days + 1, "day")
        out = {first + timedelta(days=i): {"active": 0, **dict.fromkeys(COUNTS, 0)}
               for i in range(periods.count)}
        active = await self._active_before(first, periods.since)
        for period, change in await self.session.execute(_active_changes(periods)):
            out[period]["active"] = change
        for d in out.values():
            active = d["active"] = active + d["active"]

        day = periods.bucket
        later = aliased(Grant)
        renewed = sa.exists().where(later.subscription_id == Grant.subscription_id,
                                    _covers(later, Grant.new_expires_at))
        ended = (sa.select(Grant.subscription_id, Grant.new_expires_at)
                 .where(Grant.status.in_(COVERING), Grant.new_expires_at >= periods.since,
                        Grant.new_expires_at < sa.func.least(periods.until, now()), ~renewed)
                 .distinct().subquery("ended"))
        period = day(ended.c.new_expires_at).label("period")
        for p, count in await self.session.execute(
                sa.select(period, sa.func.count()).select_from(ended).group_by(period)):
            out[p]["churned"] = count

        period = day(Grant.created_at).label("period")
        paid = (sa.select(period, sa.func.count(),
                          sa.func.count().filter(Grant.applied_at.is_not(None)))
                .where(Grant.kind == "INVOICE", Grant.created_at >= periods.since,
                       Grant.created_at < periods.until,
                       ~sa.and_(Grant.status == "REFUNDED", Grant.applied_at.is_(None)))
                .group_by(period))
        for p, count, applied in await self.session.execute(paid):
            out[p].update(paid_grants=count, paid_grants_active=applied)
        return out


    async def _active_before(self, first: date, at) -> int:
        """The active subscriptions at `at`, the start of `first`: the day before's cached
        figure, else counted."""
        cached = await self.session.scalar(sa.select(stats_days.c.figures["active"].as_integer())
                                           .where(stats_days.c.day == first - timedelta(days=1)))
        if cached is not None:
            return cached
        return await self.session.scalar(
            sa.select(sa.func.count(sa.distinct(Grant.subscription_id)))
            .where(_covering(Grant), cover(Grant).contains(at)))


def _active_changes(periods: Periods) -> sa.Select:
    """Per day, how the active subscriptions at its end (now, at most) differ from those at its
    start (now, at most). Only a subscription with a covering grant starting or ending in
    between can differ, so those are the ones compared: (covered at the end) − (covered at the
    start); a day not begun has none."""
    step = sa.cast(sa.literal_column("'1 day'"), sa.Interval)
    series = sa.func.generate_series(periods.since, periods.until - periods.step, step
                                     ).table_valued("start").render_derived()
    at = now()
    days = sa.select(sa.cast(sa.func.timezone("UTC", series.c.start), sa.Date).label("day"),
                     sa.func.least(series.c.start, at).label("start"),
                     sa.func.least(series.c.start + step, at).label("end")).subquery("days")
    touched = sa.union(*(
        sa.select(days.c.day, days.c.start, days.c.end, Grant.subscription_id)
        .join(Grant, sa.and_(_covering(Grant), column > days.c.start, column <= days.c.end))
        for column in (Grant.applied_at, Grant.new_expires_at))).subquery("touched")
    other = aliased(Grant)

    def covered(at) -> sa.ColumnElement[int]:
        return sa.cast(sa.exists().where(other.subscription_id == touched.c.subscription_id,
                                         _covers(other, at)), sa.Integer)

    return (sa.select(touched.c.day, sa.func.sum(covered(touched.c.end) - covered(touched.c.start)))
            .group_by(touched.c.day))


def cover(grant) -> sa.ColumnElement:
    """The instants a covering grant gives its subscription time, `[applied_at,
    new_expires_at)` (empty if it ends before it starts), as `ix_grants_cover` indexes it."""
    return sa.func.tstzrange(grant.applied_at,
                             sa.func.greatest(grant.applied_at, grant.new_expires_at),
                             sa.literal_column("'[)'"), type_=TSTZRANGE)


def _covering(grant) -> sa.ColumnElement[bool]:
    return sa.and_(grant.status.in_(COVERING), grant.applied_at.is_not(None))


def _covers(grant, at) -> sa.ColumnElement[bool]:
    """`grant` gives its subscription time at the instant `at`."""
    return sa.and_(grant.status.in_(COVERING), grant.applied_at <= at,
                   grant.new_expires_at > at)


def _row(period: date, days: list[dict]) -> dict:
    row = {"period": period.isoformat(), "active_subscriptions": days[-1]["active"],
           **{c: sum(d[c] for d in days) for c in COUNTS}}
    paid = row["paid_grants"]
    row["paid_to_active_ok_pct"] = (round(100 * row["paid_grants_active"] / paid, 2)
                                    if paid else None)
    return row
