"""Support hours: when the desk is staffed, and how much of a wait falls inside them.

`SUPPORT_HOURS` lists the staffed windows per weekday in `SUPPORT_TIMEZONE`, e.g.
`Mon-Fri 09:00-18:00, Sat 10:00-14:00` (days `Mon`..`Sun`, a single day or a range; `24:00`
ends a window at midnight). Empty means always staffed, so a wait counts in full. The first
response a ticket records (`first_response_business_s`) and the first-response histogram are
measured in these hours: a ticket opened on Friday evening and answered on Monday at 09:30 waited
30 minutes of support time, which is what the 2-hour goal is about.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WINDOW = re.compile(r"^(?P<first>[a-z]{3})(?:-(?P<last>[a-z]{3}))?\s+"
                     r"(?P<start>\d{2}:\d{2})-(?P<end>\d{2}:\d{2})$")
# A wait longer than this is counted up to it: bounds the work per ticket.
MAX_SPAN = timedelta(days=400)


def _minutes(text: str) -> int:
    hours, minutes = int(text[:2]), int(text[3:])
    if minutes > 59 or hours > 24 or (hours == 24 and minutes):
        raise ValueError(f"{text!r} is not a time of day (00:00 to 24:00)")
    return hours * 60 + minutes


@dataclass(frozen=True)
class SupportHours:
    # per weekday (0 = Monday): (start, end) in minutes after local midnight, sorted, disjoint
    windows: tuple[tuple[tuple[int, int], ...], ...] | None
    zone: ZoneInfo

    @classmethod
    def parse(cls, spec: str, timezone: str = "UTC") -> SupportHours:
        """ValueError with what is wrong, for a setting an operator typed."""
        try:
            zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {timezone!r}") from exc
        if not spec.strip():
            return cls(None, zone)
        days: list[list[tuple[int, int]]] = [[] for _ in DAYS]
        for part in spec.lower().split(","):
            match = _WINDOW.match(part.strip())
            if match is None:
                raise ValueError(f"{part.strip()!r} is not like 'Mon-Fri 09:00-18:00'")
            first, last = match["first"], match["last"] or match["first"]
            if first not in DAYS or last not in DAYS:
                raise ValueError(f"{part.strip()!r}: days are Mon, Tue, Wed, Thu, Fri, Sat, Sun")
            start, end = _minutes(match["start"]), _minutes(match["end"])
            if start >= end:
                raise ValueError(f"{part.strip()!r}: a window ends after it starts")
            i, j = DAYS.index(first), DAYS.index(last)
            for day in range(i, (j if j >= i else j + 7) + 1):
                days[day % 7].append((start, end))
        for day, spans in enumerate(days):
            spans.sort()
            if any(a[1] > b[0] for a, b in zip(spans, spans[1:], strict=False)):
                raise ValueError(f"the windows of {DAYS[day].title()} overlap")
        return cls(tuple(tuple(s) for s in days), zone)

    def seconds_between(self, start: datetime, end: datetime) -> int:
        """Whole seconds of support time in [start, end) (aware datetimes)."""
        if end <= start:
            return 0
        end = min(end, start + MAX_SPAN)
        if self.windows is None:
            return int((end - start).total_seconds())
        # Boundaries are local wall-clock times of each date, compared and subtracted in UTC
        # (aware datetimes of one zone subtract as wall clocks, which is wrong across DST).
        start, end = start.astimezone(UTC), end.astimezone(UTC)
        total = 0.0
        day = start.astimezone(self.zone).date()
        while day <= end.astimezone(self.zone).date():
            for open_m, close_m in self.windows[day.weekday()]:
                lo = max(_local(day, open_m, self.zone), start)
                hi = min(_local(day, close_m, self.zone), end)
                if hi > lo:
                    total += (hi - lo).total_seconds()
            day += timedelta(days=1)
        return int(total)


def _local(day: date, minutes: int, zone: ZoneInfo) -> datetime:
    """That wall-clock time of `day` in `zone`, in UTC."""
    if minutes == 24 * 60:
        local = datetime.combine(day + timedelta(days=1), time(0), zone)
    else:
        local = datetime.combine(day, time(minutes // 60, minutes % 60), zone)
    return local.astimezone(UTC)


@lru_cache(maxsize=1)
def support_hours() -> SupportHours:
    """The configured hours (read once per process; `cache_clear` after changing them)."""
    from tickets.config import Settings

    settings = Settings()
    return SupportHours.parse(settings.support_hours, settings.support_timezone)
