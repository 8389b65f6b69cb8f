"""Validating a range of days at once gives each day exactly what validating that day alone gives."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opx_learning.core.validation import validate_outcomes, validate_outcomes_by
from opx_learning_tests.core.test_validation import T0, canonical


def row(outcome_id: str | None, day: str, **changes: Any) -> dict[str, Any]:
    return {**canonical(outcome_id=outcome_id, **changes), "__day": day}


def test_a_repeated_id_is_a_duplicate_within_its_day_only() -> None:
    rows = [
        row("x", "d1", service="first"),
        row("x", "d2", service="other-day"),  # same id, another day: accepted there
        row("x", "d1", service="second"),  # duplicate of d1's first
        row("y", "d2", ttd_ms=-1.0),  # rejected, so the next y is the first accepted one
        row("y", "d2", service="kept"),
    ]
    by_day = validate_outcomes_by(pl.DataFrame(rows), "__day")
    assert set(by_day) == {"d1", "d2"}
    assert by_day["d1"].valid.select("outcome_id", "service").rows() == [("x", "first")]
    assert by_day["d1"].rejected["reason"].to_list() == [
        "outcome_id: 'x' is a duplicate (first accepted occurrence kept)"
    ]
    assert by_day["d2"].valid.select("outcome_id", "service").rows() == [("x", "other-day"), ("y", "kept")]
    assert by_day["d2"].rejected["reason"].to_list() == ["ttd_ms: -1.0 is negative"]
    assert "__day" not in by_day["d1"].valid.columns and "__day" not in by_day["d2"].rejected.columns


edits = st.sampled_from(
    [
        {},
        {"ttd_ms": -5.0},
        {"predicted_confidence": 1.5},
        {"service": "  "},
        {"root_cause": ""},
        {"true_positive": True, "false_positive": True},
        {"validated_at": T0 - timedelta(hours=1)},
    ]
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b", "c", None]), st.sampled_from(["d1", "d2", "d3"]), edits),
        max_size=25,
    )
)
def test_grouped_validation_equals_one_call_per_group(spec: list[tuple[str | None, str, dict[str, Any]]]) -> None:
    frame = pl.DataFrame([row(oid, day, **change) for oid, day, change in spec])
    if frame.is_empty():
        return
    grouped = validate_outcomes_by(frame, "__day")
    assert set(grouped) == set(frame["__day"].to_list())
    for day, result in grouped.items():
        alone = validate_outcomes(frame.filter(pl.col("__day") == day).drop("__day"))
        assert result.valid.equals(alone.valid), day
        assert result.rejected.equals(alone.rejected), day
        assert result.counts() == alone.counts()
