"""Several windows in one pass: equal to one extraction per window and to the pure-Python reference."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import polars as pl
import pytest
from hypothesis import given
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
        # Emerging root causes against the reference: counts now vs in the previous window.
        if not any(r["recorded_at"] < window.start for r in rows):
            assert all(items == [] for items in part["emerging_root_causes"].to_list())
        previous = window.previous()
        for row in part.iter_rows(named=True):
            for item in row["emerging_root_causes"]:
                key = " ".join(item["value"].split()).casefold()

                def count(w: Window, row: dict[str, Any] = row, key: str = key) -> int:
                    return sum(
                        1
                        for r in rows
                        if w.contains(r["recorded_at"])
                        and service in (None, r["service"])
                        and row["service"] in ("ALL", r["service"])
                        and " ".join(r["root_cause"].split()).casefold() == key
                    )

                assert (item["count"], item["previous_count"]) == (count(window), count(previous))
                assert item["p_value"] == pytest.approx(
                    sum(_binomial(item["count"] + item["previous_count"], j) for j in range(item["count"], 999))
                )


def _binomial(n: int, j: int) -> float:
    """P(X = j) for X ~ Binomial(n, 1/2), by hand."""
    if j > n:
        return 0.0
    coefficient = 1
    for i in range(j):
        coefficient = coefficient * (n - i) // (i + 1)
    return coefficient / 2**n


def test_cause_emerging_on_day_three_only() -> None:
    # day 1: "dns" x1 (and nothing before: empty lists); day 2: "dns" x1; day 3: "dns" x12 and "oom" x3.
    rows = (
        [{"recorded_at": at(0, hours=1), "root_cause": "dns"}]
        + [{"recorded_at": at(1, hours=1), "root_cause": "dns"}]
        + [{"recorded_at": at(2, minutes=i), "root_cause": "DNS "} for i in range(12)]
        + [{"recorded_at": at(2, hours=5), "root_cause": "oom"} for _ in range(3)]
    )
    days = [day_window((T0 + timedelta(days=i)).date()) for i in range(3)]
    result = extract_patterns_windows(outcomes(rows), days)
    assert result["service"].to_list() == ["ALL", "api"] * 3
    assert result["window_start"].to_list() == [d.start for d in days for _ in range(2)]
    emerging = result["emerging_root_causes"].to_list()
    assert emerging[:4] == [[], [], [], []]
    # 12 vs 1: P(X >= 12 | Bin(13, 1/2)) = (13 + 1) / 8192; oom 3 vs 0: 1/8 -> not emerging.
    expected = [{"value": "DNS ", "count": 12, "previous_count": 1, "p_value": pytest.approx(14 / 8192)}]
    assert emerging[4] == emerging[5] == expected
    assert result["total_incidents"].to_list() == [1, 1, 1, 1, 15, 15]


def test_first_window_without_earlier_rows_has_empty_lists_and_empty_windows_have_the_all_row() -> None:
    rows = [{"recorded_at": at(1, minutes=i), "root_cause": "new"} for i in range(20)]
    days = [day_window((T0 + timedelta(days=i)).date()) for i in range(1, 4)]
    result = extract_patterns_windows(outcomes(rows), days)
    assert result["service"].to_list() == ["ALL", "api", "ALL", "ALL"]
    assert result["total_incidents"].to_list() == [20, 20, 0, 0]
    assert result["emerging_root_causes"].to_list() == [[], [], [], []]
    # Starting a day later the frame reaches back: "new" 20 vs 0 would be emerging, but day 2 has none.
    later = extract_patterns_windows(outcomes(rows), days[1:])
    assert later["emerging_root_causes"].to_list() == [[], []]
    assert by_service(extract_patterns_windows(outcomes(rows), days[:1]))["api"]["top_root_causes"][0]["count"] == 20


def test_windows_with_gaps_compare_with_their_own_previous_window() -> None:
    # Windows Jan 5 and Jan 7: Jan 7's previous window is Jan 6, not Jan 5.
    rows = (
        [{"recorded_at": at(0, hours=1), "root_cause": "x"}]
        + [{"recorded_at": at(1, minutes=i), "root_cause": "x"} for i in range(10)]
        + [{"recorded_at": at(3, minutes=i), "root_cause": "x"} for i in range(10)]
    )
    windows = [day_window(at(1).date()), day_window(at(3).date())]
    emerging = extract_patterns_windows(outcomes(rows), windows).filter(pl.col("service") == "ALL")
    counts = [[(e["count"], e["previous_count"]) for e in items] for items in emerging["emerging_root_causes"]]
    assert counts == [[(10, 1)], [(10, 0)]]


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
