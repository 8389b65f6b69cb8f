"""extract_patterns / calibrate on frames that never went through validation: a clear ValueError, never NaN metrics."""

from __future__ import annotations

import math
from collections.abc import Callable

import polars as pl
import pytest

import opx_learning as opx

START, END = "2026-01-01", "2026-02-01"
FRAME = opx.generate_outcomes(START, END, per_day=20, seed=3)


def _poison(column: str, value: float, rows: int = 3, frame: pl.DataFrame = FRAME) -> pl.DataFrame:
    """The frame with `value` in `column` of its first `rows` rows."""
    return frame.with_columns(
        pl.when(pl.int_range(pl.len()) < rows).then(pl.lit(value)).otherwise(pl.col(column)).alias(column)
    )


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 1.5, -0.1])
def test_calibrate_refuses_bad_confidences_naming_column_and_count(value: float) -> None:
    with pytest.raises(ValueError) as caught:
        opx.calibrate(_poison("predicted_confidence", value), START, END)
    message = str(caught.value)
    assert "predicted_confidence has 3 value(s) that are NaN, infinite or outside [0, 1]" in message
    assert "opx.validate_outcomes" in message


@pytest.mark.parametrize(
    ("column", "value", "allowed"),
    [
        ("ttd_ms", -5.0, "negative"),
        ("ttd_ms", math.nan, "negative"),
        ("ttr_ms", math.inf, "negative"),
        ("human_confidence_rating", 2.0, "outside [0, 1]"),
        ("human_confidence_rating", math.nan, "outside [0, 1]"),
    ],
)
def test_extract_patterns_refuses_bad_durations_and_ratings(column: str, value: float, allowed: str) -> None:
    with pytest.raises(ValueError) as caught:
        opx.extract_patterns(_poison(column, value), START, END)
    assert f"{column} has 3 value(s) that are NaN, infinite or {allowed}" in str(caught.value)


def test_every_offending_column_is_named_with_its_own_count() -> None:
    frame = _poison("ttd_ms", -1.0, rows=2, frame=_poison("ttr_ms", math.nan, rows=5))
    with pytest.raises(ValueError) as caught:
        opx.extract_patterns(frame.lazy(), START, END)
    assert "ttd_ms has 2 value(s)" in str(caught.value) and "ttr_ms has 5 value(s)" in str(caught.value)


def test_only_rows_the_computation_reads_are_checked() -> None:
    # A bad value recorded outside the window does not block the window's calibration.
    outside = pl.concat([FRAME, _poison("predicted_confidence", math.nan, rows=1).with_columns(
        pl.col("recorded_at").dt.offset_by("3mo"), pl.col("outcome_id") + "-later")])
    result = opx.calibrate(outside, START, END)
    assert result.outcome_count == FRAME["predicted_confidence"].is_not_null().sum()
    # Nulls are "not known", skipped and counted, not an error.
    nulls = FRAME.with_columns(
        pl.when(pl.int_range(pl.len()) < 4).then(None).otherwise(pl.col("predicted_confidence")).alias("predicted_confidence")
    )
    assert opx.calibrate(nulls, START, END).skipped_count == nulls["predicted_confidence"].is_null().sum()


def test_validated_frames_give_finite_metrics() -> None:
    calibration = opx.calibrate(FRAME, START, END)
    assert all(math.isfinite(x) for x in (calibration.ece, calibration.mce, calibration.brier, calibration.drift))
    summaries = opx.extract_patterns(FRAME, START, END)
    for column in ("avg_ttd_ms", "avg_ttr_ms", "avg_confidence", "p90_ttr_ms"):
        assert summaries[column].is_finite().all(), column


@pytest.mark.parametrize("call", [opx.calibrate, opx.extract_patterns])
def test_out_of_range_window_is_a_window_error(call: Callable[..., object]) -> None:
    with pytest.raises(opx.WindowError, match="end: '9999-12-31T23:59:59.999Z' is outside the supported range"):
        call(FRAME, START, "9999-12-31T23:59:59.999Z")
    with pytest.raises(opx.WindowError, match="start: '0001-01-02' is outside the supported range"):
        call(FRAME, "0001-01-02", END)
