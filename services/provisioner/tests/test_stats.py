"""The provisioner's KPI figures (`GET /internal/admin/stats`) over a known history made with
the service's own code and a fake clock: active subscriptions at each period's end, churn, and
paid → active success, each checked exactly; the cached days (`provisioning.stats_days`)
served, and forgotten by the service's writes that change them."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa

from provisioner.models import stats_days
from provisioner.stats import StatsRepository
from runtime import daystats
from runtime.clock import now
from runtime.periods import Periods

from .test_service import backend, buy, paid, refunded, service  # noqa: F401


def on(day: int, hour: int = 12) -> datetime:
    return datetime(2026, 1, day, hour, tzinfo=UTC)


async def history(db, service) -> dict:  # noqa: F811
    """u1: 10 days on the 1st, renewed on the 9th before running out (to the 21st).
    u2: 5 days on the 2nd, never renewed (churns on the 7th). u3: 3 days on the 3rd, lapses on
    the 6th, buys again on the 8th (3 days, churns on the 11th). u4: paid on the 4th, never
    applied. u5: 30 days on the 5th, refunded in full on the 6th."""
    await buy(db, service, paid("u1", days=10), on(1))
    await buy(db, service, paid("u2", days=5), on(2))
    await buy(db, service, paid("u3", days=3), on(3))
    u4 = paid("u4")
    async with db.transaction() as s:
        await service.record_paid(s, u4, on(4))
    u5 = paid("u5", days=30)
    await buy(db, service, u5, on(5))
    async with db.transaction() as s:
        await service.record_refund(s, refunded(u5), on(6))
    async with db.transaction() as s:
        assert await service.apply_refund(s, u5.invoice_id, on(6)) == "revoked"
    await buy(db, service, paid("u3", days=3), on(8))
    renewal = paid("u1", days=10)
    await buy(db, service, renewal, on(9))
    return {"u4": u4, "u1 renewal": renewal}


async def test_active_churn_and_paid_to_active_over_a_known_history(db, service):  # noqa: F811
    await history(db, service)
    async with db.transaction() as s:
        days = await StatsRepository(s).stats(Periods.between(date(2026, 1, 1),
                                                              date(2026, 1, 14)))
        weeks = await StatsRepository(s).stats(Periods.between(date(2026, 1, 5),
                                                               date(2026, 1, 18), "week"))
        # the gauge's figure: running now by the subscriptions' own state (u1 and u3)
        assert await StatsRepository(s).running(on(10)) == 2

    series = days["series"]
    assert [r["period"] for r in series] == [f"2026-01-{d:02d}" for d in range(1, 15)]
    assert [r["active_subscriptions"] for r in series] == [1, 2, 3, 3, 3, 2, 1, 2, 2, 2, 1, 1,
                                                           1, 1]
    assert [r["churned"] for r in series] == [0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0]
    assert [(r["paid_grants"], r["paid_grants_active"]) for r in series] == [
        (1, 1), (1, 1), (1, 1), (1, 0), (1, 1), (0, 0), (0, 0), (1, 1), (1, 1), (0, 0),
        (0, 0), (0, 0), (0, 0), (0, 0)]
    assert [r["paid_to_active_ok_pct"] for r in series][:9] == [100.0, 100.0, 100.0, 0.0,
                                                                100.0, None, None, 100.0, 100.0]
    assert days["total"] == {"period": "2026-01-01", "active_subscriptions": 1, "churned": 3,
                             "paid_grants": 7, "paid_grants_active": 6,
                             "paid_to_active_ok_pct": 85.71}

    assert weeks["series"] == [
        {"period": "2026-01-05", "active_subscriptions": 1, "churned": 3, "paid_grants": 3,
         "paid_grants_active": 3, "paid_to_active_ok_pct": 100.0},
        {"period": "2026-01-12", "active_subscriptions": 1, "churned": 0, "paid_grants": 0,
         "paid_grants_active": 0, "paid_to_active_ok_pct": None}]


RANGES = (Periods.between(date(2026, 1, 1), date(2026, 1, 14)),
          Periods.between(date(2026, 1, 1), date(2026, 1, 25), "week"))  # from Monday 29 Dec
CACHED = {date(2025, 12, 29) + timedelta(days=n) for n in range(28)}


async def figures(db) -> list[dict]:
    async with db.transaction() as s:
        return [await StatsRepository(s).stats(p) for p in RANGES]


async def fresh(db) -> list[dict]:
    """The figures computed from the grants alone (the cache dropped first)."""
    async with db.transaction() as s:
        await s.execute(sa.delete(stats_days))
    return await figures(db)


async def cached_days(db) -> set[date]:
    async with db.transaction() as s:
        return set(await s.scalars(sa.select(stats_days.c.day)))


async def test_the_cached_days_are_what_is_served(db, service):  # noqa: F811
    await history(db, service)
    before = await figures(db)
    assert await cached_days(db) == CACHED
    async with db.transaction() as s:
        await s.execute(sa.update(stats_days).where(stats_days.c.day == date(2026, 1, 2))
                        .values(figures=stats_days.c.figures.op("||")(
                            sa.func.jsonb_build_object("paid_grants", 40, "active", 7))))
    days, weeks = await figures(db)
    assert days["series"][1]["paid_grants"] == 40 == before[0]["series"][1]["paid_grants"] + 39
    assert days["series"][1]["active_subscriptions"] == 7
    assert days["total"]["paid_grants"] == before[0]["total"]["paid_grants"] + 39
    assert weeks["series"][0]["paid_grants"] == before[1]["series"][0]["paid_grants"] + 39
    assert weeks["series"][0]["active_subscriptions"] == 3  # the week's last day's, the 4th
    assert weeks["series"][1:] == before[1]["series"][1:]
    assert await fresh(db) == before


async def test_a_refund_and_a_late_grant_forget_the_days_they_change(db, service):  # noqa: F811
    events = await history(db, service)
    before = await figures(db)
    renewal, u4 = events["u1 renewal"], events["u4"]
    # u1's renewal (the 9th, to the 21st) refunded on the 12th: it no longer covers the 9th to
    # the 21st, so u1's first grant ran out on the 11th unrenewed
    async with db.transaction() as s:
        await service.record_refund(s, refunded(renewal), on(12))
    async with db.transaction() as s:
        assert await service.apply_refund(s, renewal.invoice_id, on(12)) == "revoked"
    assert await cached_days(db) == CACHED - {date(2026, 1, d) for d in range(9, 22)}
    # u4's grant, paid on the 4th, applied on the 13th
    async with db.transaction() as s:
        assert (await service.apply_grant(s, u4.invoice_id, on(13))).outcome == "activated"
    assert date(2026, 1, 4) not in await cached_days(db)

    after = await figures(db)
    assert after == await fresh(db)
    days = after[0]["series"]
    assert [r["churned"] for r in days] == [0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 2, 0, 0, 0]
    assert [r["active_subscriptions"] for r in days][8:] == [2, 2, 0, 0, 1, 1]
    assert (days[3]["paid_grants"], days[3]["paid_grants_active"]) == (1, 1)
    assert after[0]["total"]["paid_grants_active"] == before[0]["total"]["paid_grants_active"] + 1
    assert after[1]["series"][1]["churned"] == before[1]["series"][1]["churned"] + 1


async def test_the_fill_job_stores_the_closed_days_once(db, service):  # noqa: F811
    await history(db, service)
    last = (now() - daystats.GRACE).date() - timedelta(days=1)
    assert await daystats.fill_recent(db, "provisioner", StatsRepository, 400, chunk=31) == 400
    async with db.transaction() as s:
        days = set(await s.scalars(sa.select(stats_days.c.day)))
    assert days == {last - timedelta(days=n) for n in range(400)}
    assert await daystats.fill_recent(db, "provisioner", StatsRepository, 400) == 0
    filled = await figures(db)
    assert filled == await fresh(db)
    assert filled[0]["total"]["paid_grants"] == 7


async def test_a_day_not_over_counts_who_is_active_now(db, service):  # noqa: F811
    """Today and the days ahead show the subscriptions running now, not a forecast: one that
    runs out tomorrow unless it is renewed still counts on the days after."""
    t = now()
    await buy(db, service, paid("u-now", days=1), t - timedelta(hours=1))
    today = t.date()
    async with db.transaction() as s:
        out = await StatsRepository(s).stats(Periods.between(today, today + timedelta(days=3)))
    assert [r["active_subscriptions"] for r in out["series"]] == [1, 1, 1, 1]
    assert out["total"]["active_subscriptions"] == 1
