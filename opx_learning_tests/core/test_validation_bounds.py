"""Bounds in validation: instants 1970..2200, ids and services of at most 256 characters without control characters."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import polars as pl
import pytest

from opx_learning.core.validation import validate_outcomes
from opx_learning_tests.core.test_validation import canonical as row

OUTSIDE = "is outside the supported range 1970-01-01 (inclusive) to 2200-01-01 (exclusive) UTC"


def only_reason(**changes: Any) -> str:
    result = validate_outcomes([row(**changes)])
    assert result.valid.is_empty(), result.valid
    return result.rejected["reason"].item()


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("0001-01-01T00:00:00Z", "'0001-01-01T00:00:00Z'"),
        ("9999-12-31T23:59:59.999Z", "'9999-12-31T23:59:59.999Z'"),
        ("1969-12-31T23:59:59.999Z", "'1969-12-31T23:59:59.999Z'"),
        ("2200-01-01", "'2200-01-01'"),
        (253_402_300_799_999, "'253402300799999'"),  # epoch milliseconds of 9999-12-31
    ],
)
def test_recorded_and_validated_at_outside_the_range_are_rejected(value: object, shown: str) -> None:
    reason = only_reason(recorded_at=value, validated_at=value)
    assert f"recorded_at: {shown} {OUTSIDE}" in reason
    assert f"validated_at: {shown} {OUTSIDE}" in reason


def test_year_one_and_9999_as_datetimes_are_rejected() -> None:
    early, late = datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, tzinfo=UTC)
    result = validate_outcomes([row(outcome_id="a", recorded_at=early), row(outcome_id="b", validated_at=late)])
    assert result.valid.is_empty()
    first, second = result.rejected["reason"].to_list()
    assert first.startswith("recorded_at: '0001-01-01T00:00:00+00:00'") and OUTSIDE in first
    assert second.startswith("validated_at: '9999-12-31T23:59:00+00:00'") and OUTSIDE in second


def test_edges_of_the_range_are_valid() -> None:
    result = validate_outcomes([
        row(outcome_id="first", recorded_at="1970-01-01T00:00:00.000Z", validated_at="1970-01-01T00:00:00.000Z"),
        row(outcome_id="last", recorded_at="2199-12-31T23:59:59.999Z", validated_at="2199-12-31T23:59:59.999Z"),
    ])
    assert result.rejected.is_empty(), result.rejected["reason"].to_list()
    assert result.valid["recorded_at"].to_list() == [
        datetime(1970, 1, 1, tzinfo=UTC), datetime(2199, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)
    ]


@pytest.mark.parametrize("column", ["outcome_id", "incident_id", "service"])
def test_nul_and_other_control_characters_are_rejected(column: str) -> None:
    assert only_reason(**{column: "abc\x00def"}) == (
        f"{column}: 'abc\ufffddef' contains control character U+0000 (control characters are not allowed)"
    )
    assert "U+001B" in only_reason(**{column: "x\x1by"})
    assert "U+0085" in only_reason(**{column: "x\x85y"})  # a C1 control
    assert "U+0009" in only_reason(**{column: "tab\there"})


@pytest.mark.parametrize("column", ["outcome_id", "incident_id", "service"])
def test_a_one_megabyte_id_is_rejected_and_256_characters_pass(column: str) -> None:
    reason = only_reason(**{column: "x" * 1_048_576})
    assert reason == f"{column}: '{'x' * 77}...' has length 1048576 (at most 256 characters)"
    # 256 characters of two bytes each are still 256 characters.
    result = validate_outcomes([row(**{column: "é" * 256})])
    assert result.rejected.is_empty() and result.valid[column].item() == "é" * 256
    assert "has length 257" in only_reason(**{column: "é" * 257})


def test_service_is_trimmed_before_the_checks() -> None:
    result = validate_outcomes([row(service="  payment-service\n")])
    assert result.rejected.is_empty() and result.valid["service"].item() == "payment-service"


def test_rejections_are_counted_per_field_on_a_frame() -> None:
    frame = pl.DataFrame([
        row(outcome_id="ok"),
        row(outcome_id="nul\x00"),
        row(outcome_id="long", incident_id="i" * 300),
        row(outcome_id="old", recorded_at=datetime(1, 1, 2, tzinfo=UTC), validated_at=datetime(1, 1, 2, tzinfo=UTC)),
    ])
    result = validate_outcomes(frame)
    assert result.valid["outcome_id"].to_list() == ["ok"]
    assert result.counts() == {"outcome_id": 1, "incident_id": 1, "recorded_at": 1, "validated_at": 1}
    # Nothing is lost: the rejected rows keep their input values.
    assert result.rejected["outcome_id"].to_list() == ["nul\x00", "long", "old"]
