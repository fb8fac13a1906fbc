"""The tickets service's KPI figures (`GET /internal/admin/stats`) over a known history in
March 2001 (no other test writes rows that old): tickets opened, answered and closed at known
times, two of them rated; the median first response, the open tickets and CSAT checked
exactly. The cached days (`tickets.stats_days`) are served, and forgotten by the writes that
change them (in Marches of their own: 2002 and 2003)."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import UTC, date, datetime, timedelta

import asyncpg
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from runtime.periods import Periods
from runtime.retention import run_rules
from runtime.testing import unit_database_url
from tickets import retention
from tickets.models import Message, Ticket, stats_days
from tickets.service import ticket_service
from tickets.stats import StatsRepository

from .conftest import make_settings


def at(day: int, hour: int = 9, minute: int = 0, year: int = 2001) -> datetime:
    return datetime(year, 3, day, hour, minute, tzinfo=UTC)


def ticket(opened: datetime, *, answers: tuple[timedelta, ...] = (),
           closed: datetime | None = None, note: timedelta | None = None,
           rating: int | None = None) -> list:
    t = Ticket(id=uuid.uuid4().hex, user_id=f"stats-{uuid.uuid4().hex[:6]}", subject="Help",
               status="CLOSED" if closed else "OPEN", source="WEB", seq=0, created_at=opened,
               last_message_at=opened, closed_at=closed, rating=rating,
               rated_at=closed + timedelta(hours=1) if rating else None)
    messages = [Message(id=uuid.uuid4().hex, ticket_id=t.id, author_role="USER", origin="WEB",
                        body="It does not connect", created_at=opened)]
    messages += [Message(id=uuid.uuid4().hex, ticket_id=t.id, author_role="SUPPORT",
                         origin="ADMIN", body="Try this", created_at=opened + after)
                 for after in answers]
    if note is not None:  # an internal note is no answer
        messages.append(Message(id=uuid.uuid4().hex, ticket_id=t.id, author_role="SUPPORT",
                                origin="TELEGRAM", kind="NOTE", body="Asked the team",
                                created_at=opened + note))
    return [t, *messages]


async def test_first_response_and_open_tickets_over_a_known_history(db):
    rows = [
        # the 5th: answered after 10 min and after 30 min (a later answer does not count)
        *ticket(at(5, 9), answers=(timedelta(minutes=10), timedelta(hours=5))),
        *ticket(at(5, 10), answers=(timedelta(minutes=30),), closed=at(6, 12), rating=5),
        # the 6th: a note after 1 min, answered after 2 h, closed the 7th; one never answered
        *ticket(at(6, 8), answers=(timedelta(hours=2),), closed=at(7, 8),
                note=timedelta(minutes=1), rating=2),
        *ticket(at(6, 9)),
        # opened late on the 7th, answered on the 8th after 3 h 20 min
        *ticket(at(7, 23), answers=(timedelta(hours=3, minutes=20),)),
    ]
    async with db.transaction() as s:
        for row in rows:
            s.add(row)
            await s.flush()

    async with db.transaction() as s:
        days = await StatsRepository(s).stats(Periods.between(date(2001, 3, 5), date(2001, 3, 8)))
        week = await StatsRepository(s).stats(Periods.between(date(2001, 3, 5), date(2001, 3, 8),
                                                               "week"))
    assert days["series"] == [
        {"period": "2001-03-05", "opened": 2, "closed": 0, "answered": 2,
         "median_first_response_s": 1200, "open_tickets": 2, "rated": 0, "csat_avg": None},
        {"period": "2001-03-06", "opened": 2, "closed": 1, "answered": 1,
         "median_first_response_s": 7200, "open_tickets": 3, "rated": 1, "csat_avg": 5.0},
        {"period": "2001-03-07", "opened": 1, "closed": 1, "answered": 0,
         "median_first_response_s": None, "open_tickets": 3, "rated": 1, "csat_avg": 2.0},
        {"period": "2001-03-08", "opened": 0, "closed": 0, "answered": 1,
         "median_first_response_s": 12000, "open_tickets": 3, "rated": 0, "csat_avg": None},
    ]
    total = {"period": "2001-03-05", "opened": 5, "closed": 2, "answered": 4,
             "median_first_response_s": 4500, "open_tickets": 3, "rated": 2, "csat_avg": 3.5}
    assert days["total"] == total
    assert week["series"] == [{**total, "open_tickets": 3}]


async def short_history(db, year: int) -> list[str]:
    """Three tickets in March of `year`: opened the 5th, answered after 10 min, still open;
    opened the 5th, answered after 30 min, closed the 6th and rated 5; opened the 6th, answered
    after 2 h, closed the 7th and rated 2. Their ids."""
    tickets = [ticket(at(5, 9, year=year), answers=(timedelta(minutes=10),)),
               ticket(at(5, 10, year=year), answers=(timedelta(minutes=30),),
                      closed=at(6, 12, year=year), rating=5),
               ticket(at(6, 8, year=year), answers=(timedelta(hours=2),),
                      closed=at(7, 8, year=year), rating=2)]
    async with db.transaction() as s:
        for rows in tickets:
            for row in rows:
                s.add(row)
                await s.flush()
    return [rows[0].id for rows in tickets]


def ranges(year: int) -> tuple[Periods, ...]:
    return (Periods.between(date(year, 3, 4), date(year, 3, 9)),
            Periods.between(date(year, 3, 4), date(year, 3, 9), "week"))


async def figures(db, year: int) -> list[dict]:
    async with db.transaction() as s:
        return [await StatsRepository(s).stats(p) for p in ranges(year)]


async def fresh(db, year: int) -> list[dict]:
    """The figures computed from the tickets and messages alone (the cache dropped first)."""
    async with db.transaction() as s:
        await s.execute(sa.delete(stats_days))
    return await figures(db, year)


async def cached_days(db, year: int) -> set[date]:
    async with db.transaction() as s:
        return set(await s.scalars(sa.select(stats_days.c.day).where(
            sa.extract("year", stats_days.c.day) == year)))


async def test_the_cached_days_are_what_is_served(db):
    await short_history(db, 2002)
    before = await figures(db, 2002)
    days = ranges(2002)[1]
    assert await cached_days(db, 2002) == {days.first + timedelta(days=n)
                                           for n in range(days.count * 7)}
    async with db.transaction() as s:
        await s.execute(sa.update(stats_days).where(stats_days.c.day == date(2002, 3, 5))
                        .values(figures=stats_days.c.figures.op("||")(
                            sa.literal({"open": 40, "waits": [60, 600, 6000]}, JSONB))))
    days, weeks = await figures(db, 2002)
    assert before[0]["series"][1]["median_first_response_s"] == 1200
    assert days["series"][1]["median_first_response_s"] == 600
    assert days["series"][1]["open_tickets"] == 40
    assert days["total"]["median_first_response_s"] == 3300  # of 60, 600, 6000 and 7200
    assert days["total"]["answered"] == before[0]["total"]["answered"]
    assert weeks["series"][0]["median_first_response_s"] == 3300
    assert await fresh(db, 2002) == before


async def test_a_reopen_a_close_and_retention_forget_the_days_they_change(db):
    still_open, closed_6th, closed_7th = await short_history(db, 2003)
    before = await figures(db, 2003)
    earlier = before[0]["series"][0]["open_tickets"]  # other tests' tickets still open
    assert [r["open_tickets"] - earlier for r in before[0]["series"]] == [0, 2, 2, 1, 1, 1]
    # the customer writes again on the ticket closed the 6th: open again, from its creation
    async with db.transaction() as s:
        ticket = await s.get(Ticket, closed_6th)
        await ticket_service.add_message(s, ticket, author="USER", origin="WEB",
                                         body="It stopped again")
        assert ticket.closed_at is None
    assert await cached_days(db, 2003) == {date(2003, 3, 3), date(2003, 3, 4)}
    await figures(db, 2003)
    async with db.transaction() as s:
        await ticket_service.close(s, await s.get(Ticket, closed_6th), by_role="SUPPORT")
    # the ticket closed the 7th purged by the service's retention rule (this ticket alone)
    await figures(db, 2003)
    rule = retention.rules(make_settings())[0]
    mine = dataclasses.replace(rule, where=lambda t: sa.and_(rule.where(t), t.c.id == closed_7th))
    assert (await run_rules(db, "tickets", [mine], now=datetime(2004, 6, 1, tzinfo=UTC))
            == {"tickets_closed": 1})
    assert date(2003, 3, 6) not in await cached_days(db, 2003)

    after = await figures(db, 2003)
    assert after == await fresh(db, 2003)
    days = after[0]["series"]
    assert [r["open_tickets"] - earlier for r in days] == [0, 2, 2, 2, 2, 2]
    assert [r["opened"] for r in days] == [0, 2, 0, 0, 0, 0]
    assert [r["closed"] for r in days] == [0] * 6
    assert [r["answered"] for r in days] == [0, 2, 0, 0, 0, 0]
    assert after[0]["total"]["rated"] == 1 and after[0]["total"]["csat_avg"] == 5.0
    assert after[0]["total"]["median_first_response_s"] == 1200


async def test_a_past_day_write_during_a_fill_waits_for_it_and_forgets_what_it_stored(db, pg):
    """The fill holds the cache's lock to its commit: a write changing a day it is storing waits,
    then deletes the stored day; a write touching only today does not wait."""
    still_open, *_ = await short_history(db, 2004)
    periods = Periods.between(date(2004, 3, 4), date(2004, 3, 9))
    async with db.transaction() as s:
        await s.execute(sa.delete(stats_days))
    writer = await asyncpg.connect(unit_database_url("tickets"))
    try:
        async with db.transaction() as s:
            await StatsRepository(s).stats(periods)  # stores the days, holding the lock
            # a ticket opened now: nothing cached is touched, no lock is taken
            await asyncio.wait_for(writer.execute(
                "INSERT INTO tickets.tickets (id, user_id, subject, status, source, seq,"
                " created_at, last_message_at) VALUES ($1, 'stats-now', 'Now', 'OPEN', 'WEB', 0,"
                " now(), now())", uuid.uuid4().hex), timeout=30)
            # the ticket opened the 5th closed on the 6th, by hand: waits for the fill
            closing = asyncio.create_task(writer.execute(
                "UPDATE tickets.tickets SET closed_at = $1, status = 'CLOSED' WHERE id = $2",
                at(6, 9, year=2004), still_open))
            for _ in range(600):  # until the update is seen waiting (or give up)
                waiting = await pg.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'advisory'"
                    " AND query LIKE 'UPDATE tickets.tickets%'")
                if waiting or closing.done():
                    break
                await asyncio.sleep(0.05)
            assert waiting == 1 and not closing.done()
        await asyncio.wait_for(closing, timeout=30)
    finally:
        await writer.close()
    assert await cached_days(db, 2004) == {date(2004, 3, 4)}
    assert (await figures(db, 2004))[0] == (await fresh(db, 2004))[0]
