"""The provisioner's KPI figures (`GET /internal/admin/stats`) over a known history made with
the service's own code and a fake clock: active subscriptions at each period's end, churn, and
paid → active success, each checked exactly."""

from __future__ import annotations

from datetime import UTC, date, datetime

from provisioner.stats import StatsRepository
from runtime.periods import Periods

from .test_service import backend, buy, paid, refunded, service  # noqa: F401


def on(day: int, hour: int = 12) -> datetime:
    return datetime(2026, 1, day, hour, tzinfo=UTC)


async def history(db, service) -> None:  # noqa: F811
    """u1: 10 days on the 1st, renewed on the 9th before running out (to the 21st).
    u2: 5 days on the 2nd, never renewed (churns on the 7th). u3: 3 days on the 3rd, lapses on
    the 6th, buys again on the 8th (3 days, churns on the 11th). u4: paid on the 4th, never
    applied. u5: 30 days on the 5th, refunded in full on the 6th."""
    await buy(db, service, paid("u1", days=10), on(1))
    await buy(db, service, paid("u2", days=5), on(2))
    await buy(db, service, paid("u3", days=3), on(3))
    async with db.transaction() as s:
        await service.record_paid(s, paid("u4"), on(4))
    u5 = paid("u5", days=30)
    await buy(db, service, u5, on(5))
    async with db.transaction() as s:
        await service.record_refund(s, refunded(u5), on(6))
    async with db.transaction() as s:
        assert await service.apply_refund(s, u5.invoice_id, on(6)) == "revoked"
    await buy(db, service, paid("u3", days=3), on(8))
    await buy(db, service, paid("u1", days=10), on(9))


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
