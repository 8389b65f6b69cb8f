"""Lazy sources (Parquet scans, multi-chunk frames): the same results as the eager frame, bit for bit."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from opx_learning.core.calibration import calibrate
from opx_learning.core.patterns import extract_patterns, extract_patterns_windows
from opx_learning.core.synthetic import generate_outcomes
from opx_learning.core.windows import day_window, week_window
from opx_learning_tests.core.test_patterns import (
    PROPERTY_SETTINGS,
    T0,
    assert_matches_reference,
    by_service,
    outcomes,
    row_strategy,
)

JAN = (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 15, tzinfo=UTC))


@pytest.fixture(scope="module")
def month() -> pl.DataFrame:
    """Two weeks of synthetic outcomes (some null confidences and ratings), rows in time order."""
    return generate_outcomes("2026-01-01", "2026-01-15", per_day=700, seed=11).sort("recorded_at")


def parquet(frame: pl.DataFrame, folder: Path, row_group_size: int) -> Path:
    path = folder / "outcomes.parquet"
    frame.write_parquet(path, row_group_size=row_group_size)
    return path


def chunked(frame: pl.DataFrame, size: int) -> pl.LazyFrame:
    """The same rows as a lazy frame of many small chunks."""
    parts = [frame.slice(offset, size) for offset in range(0, frame.height, size)] or [frame]
    return pl.concat(parts, rechunk=False).lazy()


@pytest.mark.parametrize("row_group_size", [97, 5_000, 1_000_000])
def test_scan_parquet_equals_the_eager_frame(month: pl.DataFrame, tmp_path: Path, row_group_size: int) -> None:
    path = parquet(month, tmp_path, row_group_size)
    eager = extract_patterns(month, *JAN)
    assert eager.equals(extract_patterns(pl.scan_parquet(path), *JAN))
    assert eager.equals(extract_patterns(chunked(month, row_group_size), *JAN))
    days = [day_window(JAN[0] + timedelta(days=i)) for i in range(14)]
    by_day = extract_patterns_windows(month, days)
    assert by_day.equals(extract_patterns_windows(pl.scan_parquet(path), days))
    assert calibrate(month, *JAN).to_dict() == calibrate(pl.scan_parquet(path), *JAN).to_dict()
    assert calibrate(month, *JAN).to_dict() == calibrate(chunked(month, row_group_size), *JAN).to_dict()


def test_percentiles_equal_polars_quantiles_bit_for_bit(month: pl.DataFrame, tmp_path: Path) -> None:
    path = parquet(month, tmp_path, 313)
    result = extract_patterns(pl.scan_parquet(path), *JAN)
    window = month.filter((pl.col("recorded_at") >= JAN[0]) & (pl.col("recorded_at") < JAN[1]))
    quantiles = [
        pl.col(column).quantile(q, interpolation="linear").alias(f"p{round(q * 100)}_{column}")
        for column in ("ttd_ms", "ttr_ms")
        for q in (0.5, 0.9)
    ]
    names = [expr.meta.output_name() for expr in quantiles]
    expected = {row["service"]: row for row in window.group_by("service").agg(quantiles).to_dicts()}
    expected["ALL"] = window.select(quantiles).row(0, named=True)
    assert len(expected) > 3
    for service, row in by_service(result).items():
        for name in names:
            assert row[name] == expected[service][name], (service, name)  # exact, not approximate


def test_durations_with_nulls_and_services_in_any_order() -> None:
    frame = outcomes(
        [
            {"service": "web", "ttd_ms": 5.0, "ttr_ms": None},
            {"service": "api", "ttd_ms": None, "ttr_ms": 1.0},
            {"service": "web", "ttd_ms": 1.0, "ttr_ms": None},
            {"service": "api", "ttd_ms": 2.0, "ttr_ms": 3.0},
            {"service": "web", "ttd_ms": 3.0, "ttr_ms": None},
        ]
    )
    rows = by_service(extract_patterns(chunked(frame, 2), "2026-01-04", "2026-01-05"))
    assert (rows["web"]["p50_ttd_ms"], rows["web"]["avg_ttd_ms"]) == (3.0, 3.0)
    assert rows["web"]["p90_ttd_ms"] == pytest.approx(4.6)  # rank 0.9 * 2 = 1.8 -> 3 + 0.8 * 2
    assert (rows["web"]["p50_ttr_ms"], rows["web"]["avg_ttr_ms"]) == (None, None)
    assert (rows["api"]["p50_ttd_ms"], rows["api"]["p50_ttr_ms"]) == (2.0, 2.0)
    assert rows["ALL"]["p50_ttd_ms"] == 2.5  # 1, 2, 3, 5 -> rank 1.5
    assert rows["ALL"]["p50_ttr_ms"] == 2.0  # 1, 3 -> rank 0.5


def test_columns_the_computation_does_not_need_are_never_read(month: pl.DataFrame, tmp_path: Path) -> None:
    path = parquet(month, tmp_path, 1_000)

    def unreadable(_: pl.Series) -> pl.Series:
        raise AssertionError("outcome_id was read")

    source = pl.scan_parquet(path).with_columns(
        pl.col("outcome_id").map_batches(unreadable, return_dtype=pl.String)
    )
    assert extract_patterns(source, *JAN).equals(extract_patterns(month, *JAN))
    assert calibrate(source, *JAN).to_dict() == calibrate(month, *JAN).to_dict()


@PROPERTY_SETTINGS
@given(st.lists(row_strategy, max_size=60), st.integers(1, 7))
def test_weekly_equals_its_days_on_a_lazy_source(rows: list[dict[str, Any]], chunk: int) -> None:
    frame = outcomes(rows)
    week = week_window(T0.date())
    days = [day_window(day) for day in week.days()]
    with tempfile.TemporaryDirectory() as folder:
        path = parquet(frame, Path(folder), chunk)
        weekly = extract_patterns(pl.scan_parquet(path), week.start, week.end)
        daily = extract_patterns_windows(pl.scan_parquet(path), days)
    assert weekly.equals(extract_patterns(frame, week.start, week.end))
    assert daily.equals(extract_patterns_windows(frame, days))
    assert_matches_reference(weekly, [r for r in rows if week.contains(r["recorded_at"])])
    all_days = daily.filter(pl.col("service") == "ALL")
    overall = by_service(weekly)["ALL"]
    for name in ("total_incidents", "true_positives", "false_positives"):
        assert all_days[name].sum() == overall[name]
    for service, row in by_service(weekly).items():
        parts = daily.filter((pl.col("service") == service) & (pl.col("total_incidents") > 0))
        assert parts["total_incidents"].sum() == row["total_incidents"]
        if row["total_incidents"]:
            weighted = (parts["avg_ttd_ms"] * parts["total_incidents"]).sum() / row["total_incidents"]
            assert weighted == pytest.approx(row["avg_ttd_ms"], rel=1e-9, abs=1e-9)
