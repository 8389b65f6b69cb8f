"""One time vocabulary: half-open UTC windows and the previous day / week / month."""

from __future__ import annotations

import re
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

Instant = date | datetime | str

_END_OF_DAY = time(23, 59, 59, 999000)
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")

MIN_INSTANT = datetime(1970, 1, 1, tzinfo=UTC)
"""First supported instant, in every interface and backend (docs/design.md#bounds)."""
MAX_INSTANT = datetime(2200, 1, 1, tzinfo=UTC)
"""End of the supported instants (exclusive); a window may end exactly here."""


class WindowError(ValueError):
    """A start/end value or window is invalid; the message names the field and value."""


def to_utc(value: Instant, field: str = "value") -> datetime:
    """Convert a date, datetime or ISO-8601 string to an aware UTC datetime in `[MIN_INSTANT, MAX_INSTANT)`.

    Naive datetimes are taken as UTC; a date means its midnight.

    Raises:
        WindowError: the value cannot be read as an instant, or lies outside the supported range.
    """
    instant = _read(value, field)
    if not MIN_INSTANT <= instant < MAX_INSTANT:
        raise _out_of_range(value, field)
    return instant


def to_utc_end(value: Instant, field: str = "end") -> datetime:
    """Like `to_utc`, but a runbook-style `...T23:59:59.999` end means the end of that day.

    An end may be `MAX_INSTANT` itself (windows are half-open).

    Raises:
        WindowError: the value cannot be read as an instant, or lies outside the supported range.
    """
    instant = _read(value, field)
    if not MIN_INSTANT <= instant <= MAX_INSTANT:
        raise _out_of_range(value, field)
    if instant.timetz().replace(tzinfo=None) >= _END_OF_DAY:
        instant = datetime.combine(instant.date() + timedelta(days=1), time(), tzinfo=UTC)
        if instant > MAX_INSTANT:
            raise _out_of_range(value, field)
    return instant


def _read(value: Instant, field: str) -> datetime:
    """Any accepted form as an aware UTC datetime, unbounded."""
    parsed: object = value
    if isinstance(value, str):
        text = value.strip()
        with suppress(ValueError):
            parsed = date.fromisoformat(text) if _DATE_ONLY.match(text) else datetime.fromisoformat(text.replace("z", "Z"))
    try:
        if isinstance(parsed, datetime):
            return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
        if isinstance(parsed, date):
            return datetime.combine(parsed, time(), tzinfo=UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00+01:00 has no UTC datetime
        raise _out_of_range(value, field) from None
    raise WindowError(
        f"{field}: {value!r} is not a date or ISO-8601 instant (e.g. 2026-01-01 or 2026-01-01T00:00:00.000Z)"
    )


def _out_of_range(value: Instant, field: str) -> WindowError:
    shown = value.isoformat() if isinstance(value, (date, datetime)) else value
    return WindowError(
        f"{field}: {shown!r} is outside the supported range {MIN_INSTANT.date()} (inclusive) to "
        f"{MAX_INSTANT.date()} (exclusive) UTC"
    )


def iso(instant: datetime) -> str:
    """Render a UTC instant as ISO-8601 with milliseconds and `Z` (the form used in ids)."""
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{instant.microsecond // 1000:03d}Z"


@dataclass(frozen=True, order=True)
class Window:
    """A half-open `[start, end)` interval of UTC instants."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise WindowError("window bounds must be timezone-aware UTC datetimes")
        if self.end <= self.start:
            raise WindowError(f"end: {iso(self.end)} must be after start {iso(self.start)}")

    @classmethod
    def parse(cls, start: Instant, end: Instant) -> Window:
        """Build a window from any accepted start/end form (docs/design.md#windows).

        Raises:
            WindowError: a bound is unreadable, outside 1970-01-01..2200-01-01 UTC, or end <= start.
        """
        return cls(to_utc(start, "start"), to_utc_end(end, "end"))

    @property
    def length(self) -> timedelta:
        """Duration of the window."""
        return self.end - self.start

    @property
    def start_iso(self) -> str:
        """Start as ISO-8601 UTC with milliseconds."""
        return iso(self.start)

    @property
    def end_iso(self) -> str:
        """End as ISO-8601 UTC with milliseconds."""
        return iso(self.end)

    def previous(self) -> Window:
        """The window of the same length that ends where this one starts."""
        return Window(self.start - self.length, self.start)

    def days(self) -> list[date]:
        """Every UTC calendar day the window touches, in order."""
        first = self.start.date()
        last = (self.end - timedelta(microseconds=1)).date()
        return [first + timedelta(days=i) for i in range((last - first).days + 1)]

    def contains(self, instant: datetime) -> bool:
        """Whether `instant` lies in `[start, end)`."""
        return self.start <= instant < self.end


def day_window(day: date) -> Window:
    """The window of one UTC calendar day."""
    start = datetime.combine(day, time(), tzinfo=UTC)
    return Window(start, start + timedelta(days=1))


def week_window(sunday: date) -> Window:
    """The seven-day window starting on `sunday` 00:00 UTC (the runbook's weekly cadence)."""
    start = datetime.combine(sunday, time(), tzinfo=UTC)
    return Window(start, start + timedelta(days=7))


def month_window(year: int, month: int) -> Window:
    """The window of one calendar month."""
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
    return Window(start, end)


def previous_day(at: Instant) -> Window:
    """The last complete UTC day before `at`."""
    return day_window(to_utc(at, "at").date() - timedelta(days=1))


def week_start(day: date) -> date:
    """The Sunday that starts the week containing `day`."""
    return day - timedelta(days=(day.weekday() + 1) % 7)


def previous_week(at: Instant) -> Window:
    """The last complete Sunday-to-Sunday week before `at`."""
    return week_window(week_start(to_utc(at, "at").date()) - timedelta(days=7))


def previous_month(at: Instant) -> Window:
    """The last complete calendar month before `at`."""
    current = to_utc(at, "at")
    year, month = (current.year - 1, 12) if current.month == 1 else (current.year, current.month - 1)
    return month_window(year, month)
