"""Maintenance calendar: the runbook's quarterly window and configured calendars."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from opx_learning.safety.maintenance import MaintenanceCalendar
from opx_learning.safety.models import InvalidRequest
from opx_learning_tests import wiring


def _at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize("day", [_at(2026, 1, 4), _at(2026, 4, 5), _at(2026, 7, 5), _at(2026, 10, 4), _at(2027, 1, 3)])
def test_default_is_first_sunday_of_quarter_02_to_04(day) -> None:
    calendar = MaintenanceCalendar()
    assert day.weekday() == 6 and day.day <= 7
    assert calendar.active(day.replace(hour=2)) is not None
    assert calendar.active(day.replace(hour=3, minute=59)) is not None
    assert calendar.active(day.replace(hour=1, minute=59)) is None
    assert calendar.active(day.replace(hour=4)) is None


def test_default_skips_other_months_and_sundays() -> None:
    calendar = MaintenanceCalendar()
    assert calendar.active(_at(2026, 2, 1, 2, 30)) is None  # first Sunday of February
    assert calendar.active(_at(2026, 4, 12, 2, 30)) is None  # second Sunday of April
    assert calendar.next_window(_at(2026, 1, 5)).start == _at(2026, 4, 5, 2)


def test_configured_calendar(monkeypatch, tmp_path) -> None:
    windows = [
        {"weekday": "SAT", "nth": -1, "months": [12], "start": "22:00", "end": "01:00"},
        {"start": "2026-05-01T02:00:00Z", "end": "2026-05-01T06:00:00Z"},
    ]
    monkeypatch.setenv("OPX_MAINTENANCE_WINDOWS", json.dumps(windows))
    calendar = MaintenanceCalendar.from_settings(wiring.settings())
    assert calendar.active(_at(2026, 12, 26, 23)) is not None  # last Saturday of December 2026
    assert calendar.active(_at(2026, 12, 27, 0, 30)) is not None  # crosses midnight
    assert calendar.active(_at(2026, 5, 1, 5, 59)) is not None
    assert calendar.active(_at(2026, 1, 4, 3)) is None  # default replaced
    path = tmp_path / "windows.yaml"
    path.write_text("windows: []\n")
    monkeypatch.setenv("OPX_MAINTENANCE_WINDOWS", str(path))
    assert MaintenanceCalendar.from_settings(wiring.settings()).windows == ()
    monkeypatch.setenv("OPX_MAINTENANCE_WINDOWS", "none")
    assert MaintenanceCalendar.from_settings(wiring.settings()).active(_at(2026, 1, 4, 3)) is None


@pytest.mark.parametrize(
    ("windows", "match"),
    [
        ([{"weekday": "FUNDAY", "start": "02:00", "end": "04:00"}], "weekday 'FUNDAY'"),
        ([{"weekday": "SUN", "start": "25:00", "end": "04:00"}], "start: '25:00'"),
        ([{"start": "2026-05-02", "end": "2026-05-01"}], "must be after"),
        ([{"weekday": "SUN", "months": [13], "start": "02:00", "end": "04:00"}], "months"),
        ([{"start": "02:00"}], "'start' and 'end'"),
    ],
)
def test_bad_calendar_entries(windows, match) -> None:
    with pytest.raises(InvalidRequest, match=match):
        MaintenanceCalendar.parse(windows)
