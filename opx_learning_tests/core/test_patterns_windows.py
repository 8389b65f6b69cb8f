"""Several windows in one pass: equal to one extraction per window and to the pure-Python reference."""

from __future__ import annotations

from datetime import time, timedelta
from typing import Any

import polars as pl
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from opx_learning.core.patterns import (
    SUMMARY_SCHEMA,
    extract_patterns,
    extract_patterns_windows,
)
from opx_learning.core.windows import Window, day_window
from opx_learning_tests.core.test_patterns import (
    MS_PER_DAY,
    PROPERTY_SETTINGS,
    T0,
    assert_matches_reference,
    at,
    by_service,
    outcomes,
    row_strategy,
)


def run_of_windows(first_ms: int, length_ms: int, gaps_ms: list[int]) -> list[Window]:
    """Windows of `length_ms`, the first at `first_ms` after T0, each the given gap after the one before."""
    windows, start = [], T0 + timedelta(milliseconds=first_ms)
    for gap in [0, *gaps_ms]:
        start += timedelta(milliseconds=gap)
        windows.append(Window(start, start + timedelta(milliseconds=length_ms)))
        start = windows[-1].end
    return windows


window_runs = st.builds(
    run_of_windows,
    st.integers(-MS_PER_DAY, 8 * MS_PER_DAY),  # first start
    st.one_of(st.just(MS_PER_DAY), st.integers(1, 3 * MS_PER_DAY)),  # length: a day or arbitrary
    # contiguous (the partition case) or with gaps of any length between windows
    st.one_of(st.lists(st.just(0), max_size=5), st.lists(st.integers(0, 2 * MS_PER_DAY), max_size=5)),
)


@PROPERTY_SETTINGS
@given(st.lists(row_strategy, max_size=60), window_runs, st.sampled_from([None, "api"]))
def test_windows_equal_one_extraction_per_window_and_the_reference(
    rows: list[dict[str, Any]], windows: list[Window], service: str | None
) -> None:
    # `extract_patterns` reads an end at 23:59:59.999 as the end of that day (runbook style);
    # a Window is exact, so such ends are not comparable one by one.
    assume(all(w.end.time() < time(23, 59, 59, 999000) for w in windows))
    frame = outcomes(rows)
    together = extract_patterns_windows(frame, windows, service=service)
    one_by_one = pl.concat([extract_patterns(frame, w.start, w.end, service=service) for w in windows])
    assert together.schema == pl.Schema(SUMMARY_SCHEMA)
    assert together.equals(one_by_one)
    assert together["window_start"].unique(maintain_order=True).to_list() == [w.start for w in windows]
    for window in windows:
        part = together.filter(pl.col("window_start") == window.start)
        kept = [r for r in rows if window.contains(r["recorded_at"]) and service in (None, r["service"])]
        assert_matches_reference(part, kept)


def test_empty_windows_have_the_all_row() -> None:
    rows = [{"recorded_at": at(1, minutes=i), "root_cause": "new"} for i in range(20)]
    days = [day_window((T0 + timedelta(days=i)).date()) for i in range(1, 4)]
    result = extract_patterns_windows(outcomes(rows), days)
    assert result["service"].to_list() == ["ALL", "api", "ALL", "ALL"]
    assert result["total_incidents"].to_list() == [20, 20, 0, 0]
    assert by_service(extract_patterns_windows(outcomes(rows), days[:1]))["api"]["top_root_causes"][0]["count"] == 20


def test_no_windows_give_an_empty_frame() -> None:
    result = extract_patterns_windows(outcomes([{}]), [])
    assert result.height == 0 and result.schema == pl.Schema(SUMMARY_SCHEMA)


@pytest.mark.parametrize(
    ("windows", "message"),
    [
        ([Window.parse("2026-01-04", "2026-01-05"), Window.parse("2026-01-05", "2026-01-07")], "equal length"),
        ([Window.parse("2026-01-04", "2026-01-06"), Window.parse("2026-01-05", "2026-01-07")], "non-overlapping"),
        ([Window.parse("2026-01-05", "2026-01-06"), Window.parse("2026-01-04", "2026-01-05")], "sorted"),
    ],
)
def test_overlapping_unsorted_or_unequal_windows_raise(windows: list[Window], message: str) -> None:
    with pytest.raises(ValueError, match=message) as error:
        extract_patterns_windows(outcomes([{}]), windows)
    assert "windows[1]" in str(error.value)


def test_items_must_be_windows() -> None:
    with pytest.raises(TypeError, match=r"windows\[0\]: expected a Window, got tuple"):
        extract_patterns_windows(outcomes([{}]), [("2026-01-04", "2026-01-05")])  # type: ignore[list-item]
