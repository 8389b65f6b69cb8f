"""Maintenance calendar: windows during which scheduled operations are skipped (reason MAINTENANCE_WINDOW).

Default (runbook): the first Sunday of each quarter (January, April, July,
October), 02:00-04:00 UTC. `OPX_MAINTENANCE_WINDOWS` (`Settings.maintenance_windows`) replaces it with inline
JSON or the path of a YAML/JSON file holding a list of windows (`[]` or `none`
disables the calendar). Each window is either a recurring rule

    {"weekday": "SUN", "nth": 1, "months": [1, 4, 7, 10], "start": "02:00", "end": "04:00"}

(`nth` 1-5, or -1 for the last such weekday of the month) or a one-off range

    {"start": "2026-05-01T02:00:00Z", "end": "2026-05-01T06:00:00Z"}

Windows are half-open `[start, end)` in UTC. Only SCHEDULED operations are
skipped; manual triggers and backfills are deliberate and still run (the kill
switch remains the way to stop them).
"""

from __future__ import annotations

import calendar
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import yaml

from opx_learning.config import Settings
from opx_learning.core.windows import Window, WindowError, iso, to_utc
from opx_learning.safety.models import InvalidRequest

_WEEKDAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")


@dataclass(frozen=True)
class MonthlyRule:
    """The `nth` `weekday` of each listed month, from `start` to `end` (UTC times of day)."""

    weekday: int
    nth: int
    months: tuple[int, ...]
    start: time
    end: time

    def window_in(self, year: int, month: int) -> Window | None:
        """This rule's window in one month, if the month is listed and the day exists."""
        if month not in self.months:
            return None
        days = [d for d in calendar.Calendar().itermonthdates(year, month) if d.month == month and d.weekday() == self.weekday]
        index = self.nth - 1 if self.nth > 0 else self.nth
        if not -len(days) <= index < len(days):
            return None
        day: date = days[index]
        start = datetime.combine(day, self.start, tzinfo=UTC)
        end = datetime.combine(day, self.end, tzinfo=UTC)
        if end <= start:
            end += timedelta(days=1)
        return Window(start, end)


def _time(value: Any, where: str) -> time:
    try:
        return time.fromisoformat(str(value))
    except ValueError:
        raise InvalidRequest(f"{where}: {value!r} is not a time of day like 02:00") from None


def _parse_window(entry: Any, where: str) -> MonthlyRule | Window:
    if not isinstance(entry, Mapping) or "start" not in entry or "end" not in entry:
        raise InvalidRequest(f"{where}: expected a mapping with 'start' and 'end'")
    if "weekday" not in entry:
        try:
            return Window.parse(entry["start"], entry["end"])
        except WindowError as exc:
            raise InvalidRequest(f"{where}: {exc}") from None
    weekday = str(entry["weekday"]).strip().upper()[:3]
    if weekday not in _WEEKDAYS:
        raise InvalidRequest(f"{where}: weekday {entry['weekday']!r} is not one of {', '.join(_WEEKDAYS)}")
    nth = entry.get("nth", 1)
    if nth not in (1, 2, 3, 4, 5, -1):
        raise InvalidRequest(f"{where}: nth {nth!r} must be 1-5 or -1")
    months = tuple(entry.get("months", range(1, 13)))
    if not months or any(m not in range(1, 13) for m in months):
        raise InvalidRequest(f"{where}: months {list(months)!r} must be numbers 1-12")
    start, end = _time(entry["start"], f"{where} start"), _time(entry["end"], f"{where} end")
    if start == end:
        raise InvalidRequest(f"{where}: end {entry['end']!r} must differ from start {entry['start']!r}")
    return MonthlyRule(_WEEKDAYS.index(weekday), nth, months, start, end)


DEFAULT_RULES: tuple[MonthlyRule | Window, ...] = (
    MonthlyRule(weekday=6, nth=1, months=(1, 4, 7, 10), start=time(2), end=time(4)),
)


class MaintenanceCalendar:
    """A set of recurring and one-off maintenance windows."""

    def __init__(self, windows: Sequence[MonthlyRule | Window] = DEFAULT_RULES) -> None:
        self.windows = tuple(windows)

    @classmethod
    def parse(cls, data: Any, source: str = "OPX_MAINTENANCE_WINDOWS") -> MaintenanceCalendar:
        """Build a calendar from decoded JSON/YAML (a list of windows, or `{"windows": [...]}`).

        Raises:
            InvalidRequest: malformed window, naming its position and value.
        """
        if isinstance(data, Mapping):
            data = data.get("windows", [])
        if data is None:
            data = []
        if not isinstance(data, list):
            raise InvalidRequest(f"{source}: expected a list of windows")
        return cls([_parse_window(entry, f"{source}[{i}]") for i, entry in enumerate(data)])

    @classmethod
    def from_settings(cls, settings: Settings) -> MaintenanceCalendar:
        """The calendar of `settings.maintenance_windows` (`OPX_MAINTENANCE_WINDOWS`)."""
        return cls.from_text(settings.maintenance_windows)

    @classmethod
    def from_text(cls, text: str | None) -> MaintenanceCalendar:
        """The calendar an `OPX_MAINTENANCE_WINDOWS` value configures (unset or empty: the runbook's quarterly window).

        Args:
            text: inline JSON, YAML or JSON file path, or `none`.

        Raises:
            InvalidRequest: unreadable file, invalid JSON/YAML or a malformed window (naming `OPX_MAINTENANCE_WINDOWS`).
        """
        text = (text or "").strip()
        if not text:
            return cls()
        if text.lower() == "none":
            return cls([])
        source = "OPX_MAINTENANCE_WINDOWS"
        if not text.startswith(("[", "{")):
            path = Path(text).expanduser()
            try:
                text = path.read_text()
            except OSError as exc:
                raise InvalidRequest(f"{source}: cannot read {path}: {exc.strerror or exc}") from None
            source = str(path)
        try:
            data = json.loads(text) if text.lstrip().startswith(("[", "{")) else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as exc:
            raise InvalidRequest(f"{source}: not valid JSON/YAML: {exc}") from None
        return cls.parse(data, source)

    def _candidates(self, at: datetime) -> list[Window]:
        found: list[Window] = []
        for window in self.windows:
            if isinstance(window, Window):
                found.append(window)
                continue
            for months_back in (1, 0, -1):
                year, month = at.year, at.month - months_back
                if month < 1:
                    year, month = year - 1, month + 12
                if month > 12:
                    year, month = year + 1, month - 12
                candidate = window.window_in(year, month)
                if candidate is not None:
                    found.append(candidate)
        return found

    def active(self, at: datetime | str) -> Window | None:
        """The window containing `at`, or None."""
        moment = to_utc(at, "at")
        for window in self._candidates(moment):
            if window.contains(moment):
                return window
        return None

    def next_window(self, after: datetime | str, horizon_days: int = 400) -> Window | None:
        """The first window that starts at or after `after` within the horizon."""
        moment = to_utc(after, "after")
        best: Window | None = None
        for step in range(0, horizon_days, 28):
            for window in self._candidates(moment + timedelta(days=step)):
                if window.start >= moment and (best is None or window.start < best.start):
                    best = window
            if best is not None and step >= 31:
                break
        return best

    def describe(self, window: Window) -> str:
        """`2026-01-04T02:00:00.000Z..2026-01-04T04:00:00.000Z`."""
        return f"{iso(window.start)}..{iso(window.end)}"
