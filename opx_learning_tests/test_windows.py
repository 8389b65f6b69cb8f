"""Known answers for the shared time vocabulary."""

from datetime import UTC, date, datetime

import pytest

from opx_learning.core.windows import (
    Window,
    WindowError,
    iso,
    previous_day,
    previous_month,
    previous_week,
    to_utc,
)


def test_runbook_end_means_end_of_day() -> None:
    window = Window.parse("2026-01-01T00:00:00.000Z", "2026-01-31T23:59:59.999Z")
    assert window.start == datetime(2026, 1, 1, tzinfo=UTC)
    assert window.end == datetime(2026, 2, 1, tzinfo=UTC)
    assert len(window.days()) == 31


def test_accepts_dates_naive_and_aware() -> None:
    assert to_utc(date(2026, 1, 2)) == datetime(2026, 1, 2, tzinfo=UTC)
    assert to_utc(datetime(2026, 1, 2, 3)) == datetime(2026, 1, 2, 3, tzinfo=UTC)
    assert to_utc("2026-01-02T05:00:00+02:00") == datetime(2026, 1, 2, 3, tzinfo=UTC)
    assert iso(datetime(2026, 1, 2, 3, 4, 5, 678900, tzinfo=UTC)) == "2026-01-02T03:04:05.678Z"


@pytest.mark.parametrize("start,end", [("2026-01-02", "2026-01-01"), ("2026-01-01", "2026-01-01")])
def test_end_must_follow_start(start: str, end: str) -> None:
    with pytest.raises(WindowError, match="end"):
        Window.parse(start, end)


def test_unreadable_value_names_field() -> None:
    with pytest.raises(WindowError, match="start: 'yesterday'"):
        Window.parse("yesterday", "2026-01-01")


def test_previous_windows_cross_boundaries() -> None:
    assert previous_day("2026-03-01T00:00:00Z").start == datetime(2026, 2, 28, tzinfo=UTC)
    # 2026-11-29 is a Sunday: the previous week is Sunday 22nd .. Sunday 29th.
    week = previous_week("2026-11-29T00:00:00Z")
    assert (week.start.date(), week.end.date()) == (date(2026, 11, 22), date(2026, 11, 29))
    month = previous_month("2026-01-01")
    assert (month.start.date(), month.end.date()) == (date(2025, 12, 1), date(2026, 1, 1))
    assert Window.parse("2026-01-08", "2026-01-15").previous() == Window.parse("2026-01-01", "2026-01-08")
