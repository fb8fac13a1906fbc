"""Support hours (tickets.hours): the setting's grammar and errors, support time counted across
nights, weekends and a DST change, and the first response a ticket records in those hours, which
the KPI median and the histogram use."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa

from runtime.periods import Periods
from tickets import hours as hours_module
from tickets.config import Settings
from tickets.hours import SupportHours
from tickets.models import Ticket
from tickets.repository import TicketRepository
from tickets.service import ticket_service
from tickets.stats import StatsRepository

from .test_service import new_user, open_web_ticket

WEEKDAYS = SupportHours.parse("Mon-Fri 09:00-18:00", "UTC")


def utc(day: int, hour: int, minute: int = 0, month: int = 3) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)  # 2026-03-06 is a Friday


def test_always_staffed_counts_the_whole_wait():
    always = SupportHours.parse("", "UTC")
    assert always.seconds_between(utc(6, 17), utc(9, 9, 30)) == (64 * 60 + 30) * 60
    assert always.seconds_between(utc(9, 9), utc(6, 17)) == 0


def test_nights_and_weekends_do_not_count():
    # Friday 17:00 -> Monday 09:30: one hour on Friday, half an hour on Monday
    assert WEEKDAYS.seconds_between(utc(6, 17), utc(9, 9, 30)) == 90 * 60
    # opened on Saturday, answered Monday 08:00: no support time yet
    assert WEEKDAYS.seconds_between(utc(7, 12), utc(9, 8)) == 0
    # inside one day's window
    assert WEEKDAYS.seconds_between(utc(10, 10), utc(10, 11, 15)) == 75 * 60


def test_several_windows_a_range_through_sunday_and_midnight():
    hours = SupportHours.parse("Sat-Mon 10:00-12:00, Sat 20:00-24:00", "UTC")
    # Saturday 11:00 -> Sunday 11:00: 1 h + 4 h on Saturday, 1 h on Sunday
    assert hours.seconds_between(utc(7, 11), utc(8, 11)) == 6 * 3600
    # Tuesday has no window
    assert hours.seconds_between(utc(10, 0), utc(11, 0)) == 0


def test_a_time_zone_and_its_dst_change():
    # Berlin moves its clocks forward on 2026-03-29 (02:00 -> 03:00); a window 01:00-04:00
    # on that Sunday is two hours long, not three
    hours = SupportHours.parse("Sun 01:00-04:00", "Europe/Berlin")
    assert hours.seconds_between(utc(28, 0), utc(30, 0)) == 2 * 3600
    # and 09:00-18:00 in Moscow (UTC+3) is 06:00-15:00 UTC
    moscow = SupportHours.parse("Mon-Fri 09:00-18:00", "Europe/Moscow")
    assert moscow.seconds_between(utc(9, 5), utc(9, 7)) == 3600


@pytest.mark.parametrize("spec,timezone,why", [
    ("Mon-Fri 9:00-18:00", "UTC", "is not like"),
    ("Mon-Fri 09:00-25:00", "UTC", "not a time of day"),
    ("Mon-Fri 18:00-09:00", "UTC", "ends after it starts"),
    ("Mon-Fry 09:00-18:00", "UTC", "days are"),
    ("Mon 09:00-12:00, Mon 11:00-13:00", "UTC", "overlap"),
    ("Mon-Fri 09:00-18:00", "Mars/Olympus", "unknown time zone"),
])
def test_a_bad_setting_is_refused_saying_what_is_wrong(spec, timezone, why):
    with pytest.raises(ValueError, match=why):
        SupportHours.parse(spec, timezone)
    with pytest.raises(ValueError, match="SUPPORT_HOURS / SUPPORT_TIMEZONE"):
        Settings(SUPPORT_HOURS=spec, SUPPORT_TIMEZONE=timezone)


async def test_the_first_response_is_recorded_in_support_hours(db, monkeypatch):
    monkeypatch.setattr(hours_module, "support_hours", lambda: WEEKDAYS)
    monkeypatch.setattr("tickets.service.support_hours", lambda: WEEKDAYS)
    user = new_user()
    ticket_id = await open_web_ticket(db, user)
    async with db.transaction() as s:  # as if opened on Friday at 17:00
        await s.execute(sa.update(Ticket).where(Ticket.id == ticket_id)
                        .values(created_at=utc(6, 17)))
    monkeypatch.setattr("tickets.service.now", lambda: utc(9, 9, 30))
    async with db.transaction() as s:
        ticket = await TicketRepository(s).get(ticket_id, for_update=True)
        await ticket_service.add_message(s, ticket, author="SUPPORT", origin="ADMIN",
                                         body="Here is how")
    async with db.transaction() as s:
        ticket = await TicketRepository(s).get(ticket_id)
        assert ticket.first_response_at == utc(9, 9, 30)
        assert ticket.first_response_business_s == 90 * 60
    # a later answer changes nothing
    monkeypatch.setattr("tickets.service.now", lambda: utc(9, 12))
    async with db.transaction() as s:
        ticket = await TicketRepository(s).get(ticket_id, for_update=True)
        await ticket_service.add_message(s, ticket, author="SUPPORT", origin="ADMIN",
                                         body="And also")
    async with db.transaction() as s:
        assert (await TicketRepository(s).get(ticket_id)).first_response_business_s == 90 * 60
        # the KPI median of that day is in support hours too (no other test answers then)
        day = await StatsRepository(s).stats(Periods.between(date(2026, 3, 9), date(2026, 3, 9)))
    assert day["series"][0]["median_first_response_s"] == 90 * 60


def test_the_configured_hours_are_read_from_the_settings(monkeypatch):
    monkeypatch.setenv("SUPPORT_HOURS", "Mon-Fri 09:00-18:00")
    monkeypatch.setenv("SUPPORT_TIMEZONE", "Europe/Moscow")
    hours_module.support_hours.cache_clear()
    try:
        assert hours_module.support_hours() == SupportHours.parse("Mon-Fri 09:00-18:00",
                                                                  "Europe/Moscow")
    finally:
        hours_module.support_hours.cache_clear()
