"""The KPI periods every service and the gateway agree on: days or ISO weeks, bounded."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from runtime.errors import ValidationFailed
from runtime.periods import MAX_PERIODS, Periods


def test_days_and_weeks_cover_the_range_with_weeks_from_monday():
    days = Periods.between(date(2026, 3, 4), date(2026, 3, 6))
    assert [d.isoformat() for d in days.starts()] == ["2026-03-04", "2026-03-05", "2026-03-06"]
    assert (days.since, days.until) == (datetime(2026, 3, 4, tzinfo=UTC),
                                        datetime(2026, 3, 7, tzinfo=UTC))
    weeks = Periods.between(date(2026, 3, 4), date(2026, 3, 16), "week")  # a Wednesday
    assert [d.isoformat() for d in weeks.starts()] == ["2026-03-02", "2026-03-09", "2026-03-16"]
    assert weeks.last == date(2026, 3, 22)
    assert weeks.params() == {"from": "2026-03-02", "to": "2026-03-22", "granularity": "week"}


def test_the_default_is_the_last_30_days_up_to_today():
    periods = Periods.between(None, None)
    assert periods.count == 30 and periods.last == datetime.now(UTC).date()


@pytest.mark.parametrize("start, end", [
    (date(2026, 3, 2), date(2026, 3, 1)),  # from after to
    (date(2025, 1, 1), date(2026, 1, 2)),  # 367 days
    (date(1, 1, 1), date(2026, 1, 1)),  # out of bounds
    (None, date(9999, 12, 31)),
])
def test_a_reversed_too_long_or_out_of_bounds_range_is_refused(start, end):
    with pytest.raises(ValidationFailed):
        Periods.between(start, end)


def test_at_most_366_periods_of_either_kind():
    assert Periods.between(date(2024, 1, 1), date(2024, 12, 31)).count == MAX_PERIODS
    assert Periods.between(date(2000, 1, 3), date(2007, 1, 7), "week").count == MAX_PERIODS
