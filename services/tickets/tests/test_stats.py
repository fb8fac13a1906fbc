"""The tickets service's KPI figures (`GET /internal/admin/stats`) over a known history in
March 2001 (no other test writes rows that old): tickets opened, answered and closed at known
times, two of them rated; the median first response, the open tickets and CSAT checked
exactly."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

from runtime.periods import Periods
from tickets.models import Message, Ticket
from tickets.stats import StatsRepository


def at(day: int, hour: int = 9, minute: int = 0) -> datetime:
    return datetime(2001, 3, day, hour, minute, tzinfo=UTC)


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
