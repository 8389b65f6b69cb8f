"""Analyst API mistakes get clear errors naming the argument, never a library traceback."""

from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

import opx_learning as opx


def test_corrupt_parquet_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(ValueError, match=r"path: '.*broken\.parquet' is not a readable Parquet file"):
        opx.validate_outcomes(path)


@pytest.mark.parametrize("call", [opx.extract_patterns, opx.calibrate])
def test_missing_columns_are_named(call: Callable[..., object]) -> None:
    with pytest.raises(ValueError, match=r"outcomes: missing column\(s\) .*recorded_at"):
        call(pl.DataFrame({"a": [1]}), "2026-01-01", "2026-01-02")


def test_wrong_column_type_is_named() -> None:
    frame = opx.generate_outcomes("2026-01-01", "2026-01-03", seed=1).with_columns(
        pl.col("recorded_at").dt.to_string()
    )
    with pytest.raises(ValueError, match="recorded_at is String"):
        opx.extract_patterns(frame, "2026-01-01", "2026-01-03")


def test_non_frame_outcomes_are_a_type_error() -> None:
    with pytest.raises(TypeError, match="outcomes: expected a polars DataFrame or LazyFrame"):
        opx.extract_patterns([1, 2], "2026-01-01", "2026-01-02")


@pytest.mark.parametrize("value", [0, -1, 2.5, True])
def test_min_outcomes_must_be_a_positive_whole_number(value: object) -> None:
    frame = opx.generate_outcomes("2026-01-01", "2026-01-03", seed=1)
    with pytest.raises(ValueError, match="min_outcomes"):
        opx.calibrate(frame, "2026-01-01", "2026-01-03", min_outcomes=value)  # type: ignore[arg-type]


def test_naive_datetimes_are_taken_as_utc() -> None:
    frame = opx.generate_outcomes("2026-01-01", "2026-01-03", seed=1)
    naive = frame.with_columns(pl.col("recorded_at", "validated_at").dt.replace_time_zone(None))
    assert opx.extract_patterns(naive, "2026-01-01", "2026-01-03").equals(
        opx.extract_patterns(frame, "2026-01-01", "2026-01-03")
    )


def test_snapshot_of_a_window_without_outcomes_is_empty_even_with_its_zero_all_row() -> None:
    frame = opx.generate_outcomes("2026-01-01", "2026-01-03", seed=1)
    summaries = opx.extract_patterns(frame, "2026-02-01", "2026-02-02")
    assert summaries["service"].to_list() == ["ALL"]
    snapshot = opx.build_snapshot("DAILY", "2026-02-01", "2026-02-02", frame, summaries)
    assert snapshot.empty
    assert snapshot.counts["outcomes"] == 0
