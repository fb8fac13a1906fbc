"""Billing's KPI figures (`GET /internal/admin/stats`) over a known history in March 2001: no
other test writes rows that old, so every figure is checked exactly. The cached days
(`billing.stats_days`) are served, and forgotten by writes that change them (in their own
Marches: 2002 and 2003)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa

from billing.metrics import REVENUE_USD
from billing.models import Invoice, Trial, stats_days
from billing.stats import StatsRepository
from runtime.periods import Periods

from .test_service import new_invoice, new_plan, pay


def at(day: int, hour: int = 12, month: int = 3) -> datetime:
    return datetime(2001, month, day, hour, tzinfo=UTC)


def invoice(user: str, kind: str, plan_id: str | None, amount: str, *, paid: datetime | None,
            refunded: datetime | None = None) -> Invoice:
    created = paid or at(1)
    status = "REFUNDED" if refunded else "PAID" if paid else "CREATED"
    return Invoice(
        id=uuid.uuid4().hex, user_id=user, kind=kind, plan_id=plan_id, status=status,
        amount_usd=Decimal(amount), asset="USDT", network="TRON", rate_usd=Decimal(1),
        amount_asset=Decimal(amount), provider="sandbox", rate_locked_until=created,
        created_at=created, updated_at=created, paid_at=paid, refunded_at=refunded,
        renewal_key=uuid.uuid4().hex if kind == "RENEWAL" else None,
        subscription_id="sub" if kind == "RENEWAL" else None)


async def history(db, year: int = 2001) -> dict[str, str]:
    """A: trial on the 5th, first plan on the 6th (new, converted), renewal on the 13th.
    B: plan on the 6th refunded on the 7th. C: a trial on the 8th, never pays. D: paid in
    February, again on the 14th (a renewal). Not counted: a top-up, an unpaid invoice, a
    payment just after the range. In `year` (2001 unless a test needs a March of its own); the
    customers' ids by letter."""

    def at(day: int, hour: int = 12, month: int = 3) -> datetime:
        return datetime(year, month, day, hour, tzinfo=UTC)

    plan = await new_plan(db)
    a, b, c, d, e = (f"stats-{n}-{uuid.uuid4().hex[:6]}" for n in "abcde")
    rows = [
        invoice(a, "PLAN", plan, "10.00", paid=at(6, 12)),
        invoice(a, "RENEWAL", plan, "10.00", paid=at(13, 9)),
        invoice(b, "PLAN", plan, "5.50", paid=at(6, 15), refunded=at(7, 8)),
        invoice(d, "PLAN", plan, "10.00", paid=at(20, month=2)),
        invoice(d, "PLAN", plan, "7.25", paid=at(14, 23)),
        invoice(b, "TOP_UP", None, "50.00", paid=at(6, 16)),
        invoice(c, "PLAN", plan, "10.00", paid=None),
        invoice(e, "PLAN", plan, "10.00", paid=datetime(year, 3, 19, tzinfo=UTC)),
    ]
    trial_a = invoice(a, "TRIAL", None, "0.00", paid=at(5, 10))
    trial_c = invoice(c, "TRIAL", None, "0.00", paid=at(8, 10))
    async with db.transaction() as s:
        s.add_all([*rows, trial_a, trial_c])
        await s.flush()
        s.add_all([Trial(user_id=a, invoice_id=trial_a.id, created_at=at(5, 10)),
                   Trial(user_id=c, invoice_id=trial_c.id, created_at=at(8, 10))])
    return {"a": a, "b": b, "c": c, "d": d, "e": e, "plan": plan}


async def test_figures_per_day_week_and_total_over_a_known_history(sandbox, db):
    await history(db)
    async with db.transaction() as s:
        days = await StatsRepository(s).stats(Periods.between(date(2001, 3, 5),
                                                              date(2001, 3, 18)))
        weeks = await StatsRepository(s).stats(Periods.between(date(2001, 3, 7),
                                                               date(2001, 3, 18), "week"))

    by_day = {r["period"]: r for r in days["series"]}
    assert len(by_day) == 14 and min(by_day) == "2001-03-05" and max(by_day) == "2001-03-18"
    zero = {"revenue_usd": Decimal("0.00"), "paid_invoices": 0, "new_customers": 0,
            "renewals": 0, "trials": 0, "trial_conversions": 0, "refunds": 0}
    expected = {
        "2001-03-05": {**zero, "trials": 1},
        "2001-03-06": {**zero, "revenue_usd": Decimal("15.50"), "paid_invoices": 2,
                       "new_customers": 2, "trial_conversions": 1},
        "2001-03-07": {**zero, "refunds": 1},
        "2001-03-08": {**zero, "trials": 1},
        "2001-03-13": {**zero, "revenue_usd": Decimal("10.00"), "paid_invoices": 1,
                       "renewals": 1},
        "2001-03-14": {**zero, "revenue_usd": Decimal("7.25"), "paid_invoices": 1,
                       "renewals": 1},
    }
    for period, row in by_day.items():
        assert {k: v for k, v in row.items() if k != "period"} == expected.get(period, zero), \
            period

    assert [r["period"] for r in weeks["series"]] == ["2001-03-05", "2001-03-12"]
    first, second = weeks["series"]
    assert first == {"period": "2001-03-05", "revenue_usd": Decimal("15.50"), "paid_invoices": 2,
                     "new_customers": 2, "renewals": 0, "trials": 2, "trial_conversions": 1,
                     "refunds": 1}
    assert second == {"period": "2001-03-12", "revenue_usd": Decimal("17.25"),
                      "paid_invoices": 2, "new_customers": 0, "renewals": 2, "trials": 0,
                      "trial_conversions": 0, "refunds": 0}
    assert days["total"] == {"period": "2001-03-05", "revenue_usd": Decimal("32.75"),
                             "paid_invoices": 4, "new_customers": 2, "renewals": 2,
                             "trials": 2, "trial_conversions": 1, "refunds": 1}


async def test_the_revenue_counter_grows_by_a_paid_plan_once(sandbox, db):
    plan_id = await new_plan(db, price="12.50")
    inv = await new_invoice(sandbox, db, plan_id, user=f"stats-rev-{uuid.uuid4().hex[:6]}")
    before = REVENUE_USD.labels("PLAN")._value.get()
    await pay(db, inv, Decimal(inv["amount_asset"]), blocks=2)
    assert await sandbox.watcher.watch_one(inv["id"]) == "PAID"
    assert await sandbox.watcher.watch_one(inv["id"]) == "PAID"  # seen again: counted once
    assert REVENUE_USD.labels("PLAN")._value.get() - before == 12.5


def ranges(year: int) -> tuple[Periods, ...]:
    return (Periods.between(date(year, 3, 1), date(year, 3, 20)),
            Periods.between(date(year, 3, 1), date(year, 3, 20), "week"))


async def figures(db, year: int) -> list[dict]:
    async with db.transaction() as s:
        return [await StatsRepository(s).stats(p) for p in ranges(year)]


async def fresh(db, year: int) -> list[dict]:
    """The figures computed from the invoices and trials alone (the cache dropped first)."""
    async with db.transaction() as s:
        await s.execute(sa.delete(stats_days))
    return await figures(db, year)


async def cached_days(db, year: int) -> set[date]:
    async with db.transaction() as s:
        return set(await s.scalars(sa.select(stats_days.c.day).where(
            sa.extract("year", stats_days.c.day) == year)))


async def test_the_cached_days_are_what_is_served(db):
    await history(db, 2002)
    before = await figures(db, 2002)
    # the weeks from Monday 25 February to Sunday 24 March
    assert await cached_days(db, 2002) == {date(2002, 2, 25) + timedelta(days=n)
                                           for n in range(28)}
    async with db.transaction() as s:
        await s.execute(sa.update(stats_days).where(stats_days.c.day == date(2002, 3, 6))
                        .values(figures=stats_days.c.figures.op("||")(
                            sa.func.jsonb_build_object("revenue_usd", "1000.05",
                                                       "renewals", 9))))
    days, weeks = await figures(db, 2002)
    assert days["series"][5]["revenue_usd"] == Decimal("1000.05")
    assert days["series"][5]["renewals"] == 9
    assert days["total"]["revenue_usd"] == before[0]["total"]["revenue_usd"] + Decimal("984.55")
    assert weeks["series"][1]["renewals"] == before[1]["series"][1]["renewals"] + 9
    assert await fresh(db, 2002) == before


async def test_writes_to_past_days_forget_them(db):
    people = await history(db, 2003)
    before = await figures(db, 2003)
    a, c = people["a"], people["c"]
    cached = await cached_days(db, 2003)
    # a correction: A had paid a plan on the 4th already, so the 6th's is a renewal and the
    # trial on the 5th converted nobody; every day from the 4th on is forgotten
    async with db.transaction() as s:
        s.add(invoice(a, "PLAN", people["plan"], "3.00",
                      paid=datetime(2003, 3, 4, 8, tzinfo=UTC)))
    assert await cached_days(db, 2003) == {d for d in cached if d < date(2003, 3, 4)}
    await figures(db, 2003)
    # C's trial deleted: the 8th's trials and every day after it
    async with db.transaction() as s:
        await s.execute(sa.delete(Trial).where(Trial.user_id == c))
    assert await cached_days(db, 2003) == {d for d in cached if d < date(2003, 3, 8)}

    after = await figures(db, 2003)
    assert after == await fresh(db, 2003)
    days = {r["period"]: r for r in after[0]["series"]}
    assert (days["2003-03-04"]["new_customers"], days["2003-03-06"]["new_customers"],
            days["2003-03-06"]["renewals"], days["2003-03-06"]["trial_conversions"]) == (1, 1, 1, 0)
    assert days["2003-03-08"]["trials"] == 0
    assert after[0]["total"]["trials"] == before[0]["total"]["trials"] - 1
    assert after[0]["total"]["revenue_usd"] == before[0]["total"]["revenue_usd"] + Decimal("3")
