"""validate_outcomes: every rejection rule, camelCase input, files, duplicates, never crashing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opx_learning.core.schema import OUTCOME_COLUMNS, OUTCOME_SCHEMA
from opx_learning.core.synthetic import generate_outcomes
from opx_learning.core.validation import (
    REJECTED_SCHEMA,
    ValidationResult,
    validate_outcomes,
)

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


def canonical(**changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "outcome_id": "o-1",
        "incident_id": "i-1",
        "service": "payment-service",
        "recorded_at": T0,
        "validated_at": T0 + timedelta(hours=1),
        "true_positive": True,
        "false_positive": False,
        "root_cause": "memory leak",
        "resolution_type": "FIXED",
        "ttd_ms": 1500.0,
        "ttr_ms": 60000.0,
        "predicted_confidence": 0.8,
        "human_confidence_rating": 0.7,
    }
    row.update(changes)
    return row


def camel(**changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "outcomeId": "o-1",
        "incidentId": "i-1",
        "service": "payment-service",
        "recordedAt": "2026-01-05T10:00:00.000Z",
        "validatedAt": "2026-01-05T12:00:00+01:00",
        "classification": {
            "truePositive": True,
            "falsePositive": False,
            "rootCause": "memory leak",
            "resolutionType": "FIXED",
        },
        "timing": {"ttd": 1500, "ttr": 60000},
        "predictedConfidence": 0.8,
        "humanAssessment": {"confidenceRating": 0.7},
    }
    row.update(changes)
    return row


def only_reason(rows: list[dict[str, Any]]) -> str:
    result = validate_outcomes(rows)
    assert result.valid.height == 0
    assert result.rejected.height == 1
    return result.rejected["reason"][0]


def test_canonical_rows_pass_with_exact_schema() -> None:
    result = validate_outcomes([canonical(), canonical(outcome_id="o-2", predicted_confidence=None)])
    assert result.rejected.height == 0
    assert result.valid.schema == pl.Schema(OUTCOME_SCHEMA)
    assert result.valid.columns == list(OUTCOME_COLUMNS)
    assert result.valid["predicted_confidence"].to_list() == [0.8, None]
    assert result.rejected.schema == pl.Schema(REJECTED_SCHEMA)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"outcome_id": None}, "outcome_id: missing (required)"),
        ({"incident_id": None}, "incident_id: missing (required)"),
        ({"service": None}, "service: missing (required)"),
        ({"recorded_at": None}, "recorded_at: missing (required)"),
        ({"validated_at": None}, "validated_at: missing (required)"),
        ({"true_positive": None}, "true_positive: missing (required)"),
        ({"false_positive": None}, "false_positive: missing (required)"),
        ({"root_cause": None}, "root_cause: missing (required)"),
        ({"resolution_type": None}, "resolution_type: missing (required)"),
        ({"ttd_ms": None}, "ttd_ms: missing (required)"),
        ({"ttr_ms": None}, "ttr_ms: missing (required)"),
        ({"recorded_at": "yesterday"}, "recorded_at: 'yesterday' is not a timestamp"),
        ({"validated_at": "2026-13-01"}, "validated_at: '2026-13-01' is not a timestamp"),
        ({"true_positive": "maybe"}, "true_positive: 'maybe' is not a boolean"),
        ({"false_positive": 7}, "false_positive: '7' is not a boolean"),
        ({"ttd_ms": "fast"}, "ttd_ms: 'fast' is not a finite number"),
        ({"ttr_ms": float("nan")}, "ttr_ms: 'NaN' is not a finite number"),
        ({"predicted_confidence": "high"}, "predicted_confidence: 'high' is not a finite number"),
        ({"service": "   "}, "service: '   ' is empty after trimming"),
        (
            {"validated_at": T0 - timedelta(seconds=1)},
            "validated_at: 2026-01-05T09:59:59Z is before recorded_at 2026-01-05T10:00:00Z",
        ),
        ({"false_positive": True}, "true_positive/false_positive: both are true"),
        ({"root_cause": ""}, "root_cause: '' has length 0"),
        ({"root_cause": "  "}, "root_cause: '  ' has length 2 (must be 1..500 characters, not blank)"),
        ({"root_cause": "x" * 501}, "has length 501"),
        ({"resolution_type": "REBOOTED"}, "resolution_type: 'REBOOTED' is not one of FIXED, MITIGATED"),
        ({"ttd_ms": -1.0}, "ttd_ms: -1.0 is negative"),
        ({"ttr_ms": -0.5}, "ttr_ms: -0.5 is negative"),
        ({"predicted_confidence": 1.01}, "predicted_confidence: 1.01 is outside [0, 1]"),
        ({"predicted_confidence": -0.1}, "predicted_confidence: -0.1 is outside [0, 1]"),
        ({"human_confidence_rating": 2.0}, "human_confidence_rating: 2.0 is outside [0, 1]"),
    ],
)
def test_each_rule_rejects_with_a_reason_naming_field_and_value(changes: dict[str, Any], expected: str) -> None:
    reason = only_reason([canonical(**changes)])
    assert expected in reason


def test_boundaries_are_accepted() -> None:
    rows = [
        canonical(outcome_id="a", validated_at=T0, ttd_ms=0.0, ttr_ms=0.0, predicted_confidence=0.0),
        canonical(outcome_id="b", root_cause="y" * 500, predicted_confidence=1.0, human_confidence_rating=None),
        canonical(outcome_id="c", true_positive=False, false_positive=False, resolution_type=" other "),
    ]
    result = validate_outcomes(rows)
    assert result.rejected.height == 0, result.rejected["reason"].to_list()
    assert result.valid["resolution_type"].cast(pl.String).to_list() == ["FIXED", "FIXED", "OTHER"]


def test_several_problems_are_joined() -> None:
    reason = only_reason([canonical(ttd_ms=-3.0, predicted_confidence=4.0, resolution_type="NOPE")])
    parts = reason.split("; ")
    assert len(parts) == 3
    assert {part.split(":")[0] for part in parts} == {"ttd_ms", "predicted_confidence", "resolution_type"}


def test_rejected_row_keeps_input_values_as_text() -> None:
    result = validate_outcomes([canonical(outcome_id="bad", recorded_at="not-a-time", ttd_ms=-1.0)])
    row = result.rejected.row(0, named=True)
    assert row["outcome_id"] == "bad"
    assert row["recorded_at"] == "not-a-time"
    assert row["ttd_ms"] == "-1.0"
    assert row["service"] == "payment-service"


def test_duplicates_keep_the_first_accepted_row() -> None:
    rows = [
        canonical(outcome_id="x", service="first"),
        canonical(outcome_id="x", service="second"),
        canonical(outcome_id="y", ttd_ms=-1.0),
        canonical(outcome_id="y", service="fixed-copy"),
        canonical(outcome_id="x", service="third", ttr_ms=-1.0),
    ]
    result = validate_outcomes(rows)
    assert result.valid.select("outcome_id", "service").rows() == [("x", "first"), ("y", "fixed-copy")]
    reasons = result.rejected["reason"].to_list()
    assert len(reasons) == 3
    assert reasons[0] == "outcome_id: 'x' is a duplicate (first accepted occurrence kept)"
    assert reasons[1] == "ttd_ms: -1.0 is negative"
    assert reasons[2] == "ttr_ms: -1.0 is negative; outcome_id: 'x' is a duplicate (first accepted occurrence kept)"


def test_camel_case_is_mapped() -> None:
    result = validate_outcomes([camel()])
    assert result.rejected.height == 0
    row = result.valid.row(0, named=True)
    assert row == {
        "outcome_id": "o-1",
        "incident_id": "i-1",
        "service": "payment-service",
        "recorded_at": T0,
        "validated_at": T0 + timedelta(hours=1),
        "true_positive": True,
        "false_positive": False,
        "root_cause": "memory leak",
        "resolution_type": "FIXED",
        "ttd_ms": 1500.0,
        "ttr_ms": 60000.0,
        "predicted_confidence": 0.8,
        "human_confidence_rating": 0.7,
    }


def test_camel_case_alternative_spellings() -> None:
    row = camel(rootCause="disk full", resolution={"type": "MITIGATED"}, confidence=0.4, predictedConfidence=None)
    del row["classification"]["rootCause"]
    del row["classification"]["resolutionType"]
    row["classification"]["confidence"] = 0.9
    second = camel(outcomeId="o-2", resolutionType="duplicate")
    del second["classification"]["resolutionType"]
    del second["predictedConfidence"]
    second["classification"]["confidence"] = 0.25
    result = validate_outcomes([row, second])
    assert result.rejected.height == 0, result.rejected["reason"].to_list()
    assert result.valid["root_cause"].to_list() == ["disk full", "memory leak"]
    assert result.valid["resolution_type"].cast(pl.String).to_list() == ["MITIGATED", "DUPLICATE"]
    # predictedConfidence wins over confidence and classification.confidence when present.
    assert result.valid["predicted_confidence"].to_list() == [0.4, 0.25]


def test_timestamps_in_every_form_become_utc() -> None:
    epoch_ms = int(T0.timestamp() * 1000)
    forms = [
        "2026-01-05T10:00:00Z",
        "2026-01-05T10:00:00.000z",
        "2026-01-05T12:00:00+02:00",
        "2026-01-05 10:00:00",
        epoch_ms,
        str(epoch_ms),
        datetime(2026, 1, 5, 5, 0, tzinfo=timezone(timedelta(hours=-5))),
        datetime(2026, 1, 5, 10, 0),
    ]
    rows = [canonical(outcome_id=str(i), recorded_at=form, validated_at=T0) for i, form in enumerate(forms)]
    result = validate_outcomes(rows)
    assert result.rejected.height == 0, result.rejected["reason"].to_list()
    assert result.valid["recorded_at"].to_list() == [T0] * len(forms)


def test_service_is_trimmed_and_integer_ids_become_strings() -> None:
    result = validate_outcomes([canonical(service="  order-service \t", outcome_id=42)])
    assert result.valid["service"].to_list() == ["order-service"]
    assert result.valid["outcome_id"].to_list() == ["42"]


def test_files_jsonl_json_and_parquet(tmp_path: Path) -> None:
    rows = [camel(outcomeId=f"o-{i}") for i in range(3)]
    jsonl = tmp_path / "outcomes.jsonl"
    jsonl.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    array = tmp_path / "outcomes.json"
    array.write_text(json.dumps(rows))
    parquet = tmp_path / "outcomes.parquet"
    expected = validate_outcomes(rows).valid
    expected.write_parquet(parquet)
    for source in (jsonl, str(array), parquet):
        result = validate_outcomes(source)
        assert result.rejected.height == 0
        assert result.valid.equals(expected)


def test_broken_json_lines_are_rejected_not_dropped(tmp_path: Path) -> None:
    path = tmp_path / "mixed.ndjson"
    lines = [json.dumps(camel(outcomeId="ok")), "{not json", json.dumps([1, 2]), json.dumps(camel(outcomeId=7))]
    path.write_text("\n".join(lines) + "\n")
    result = validate_outcomes(path)
    assert result.valid["outcome_id"].to_list() == ["ok", "7"]
    reasons = result.rejected["reason"].to_list()
    assert reasons[0].startswith("line 2: invalid JSON")
    assert reasons[1] == "line 3: expected an object, got '[1, 2]'"
    assert result.rejected["line"].to_list() == [2, 3]
    assert result.total == 4


def test_nested_frame_with_struct_columns() -> None:
    frame = pl.DataFrame([camel(outcomeId="s-1"), camel(outcomeId="s-2", timing={"ttd": -5, "ttr": 1})])
    assert isinstance(frame.schema["classification"], pl.Struct)
    result = validate_outcomes(frame.lazy())
    assert result.valid["outcome_id"].to_list() == ["s-1"]
    assert result.rejected["reason"].to_list() == ["ttd_ms: -5.0 is negative"]


def test_malformed_input_never_crashes() -> None:
    rows: list[Any] = [
        {"outcome_id": ["a"], "service": {"deep": {"er": 1}}, "recorded_at": 3.5e30, "ttd_ms": True},
        {"classification": "not-a-dict", "timing": [1, 2]},
        {},
        None,
        canonical(outcome_id="fine"),
    ]
    result = validate_outcomes(rows)
    assert result.valid["outcome_id"].to_list() == ["fine"]
    assert result.rejected.height == 4
    first = result.rejected["reason"][0]
    assert "outcome_id: '[\"a\"]' is not a string" in first
    assert "recorded_at: '3.5e+30' is not a timestamp" in first
    assert "ttd_ms: 'true' is not a finite number" in first
    assert result.summary()["rejected"] == 4


def test_frame_missing_columns_rejects_every_row() -> None:
    result = validate_outcomes(pl.DataFrame({"outcome_id": ["a", "b"]}))
    assert result.valid.height == 0
    assert result.rejected.height == 2
    assert result.rejected["reason"][0].startswith("incident_id: missing (required); service: missing")


def test_summary_counts_by_field() -> None:
    result = validate_outcomes([canonical(outcome_id="a"), canonical(outcome_id="b", ttd_ms=-1.0), canonical(outcome_id="a")])
    assert result.summary() == {
        "total": 3,
        "valid": 1,
        "rejected": 2,
        "rejected_by_field": {"ttd_ms": 1, "outcome_id": 1},
    }
    assert isinstance(result, ValidationResult)


def test_bad_arguments_raise_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        validate_outcomes(tmp_path / "missing.jsonl")
    (tmp_path / "data.txt").write_text("a,b\n")
    with pytest.raises(ValueError, match="unsupported extension '.txt'"):
        validate_outcomes(tmp_path / "data.txt")
    with pytest.raises(TypeError, match="got int"):
        validate_outcomes(5)  # type: ignore[arg-type]


def test_generated_frame_is_fully_valid_and_order_invariant() -> None:
    frame = generate_outcomes("2026-01-01", days=3, per_day=200, seed=4)
    result = validate_outcomes(frame)
    assert result.rejected.height == 0
    assert result.valid.equals(frame)
    shuffled = validate_outcomes(frame.sample(fraction=1.0, shuffle=True, seed=1)).valid
    assert shuffled.sort("outcome_id").equals(frame.sort("outcome_id"))


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.datetimes(timezones=st.sampled_from([None, UTC])),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=6)
keys = st.sampled_from(
    [*OUTCOME_COLUMNS, "outcomeId", "recordedAt", "classification", "timing", "humanAssessment", "confidence", "junk"]
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.dictionaries(keys, values, max_size=8), max_size=6))
def test_arbitrary_rows_never_raise_and_nothing_is_dropped(rows: list[dict[str, Any]]) -> None:
    result = validate_outcomes(rows)
    assert result.valid.height + result.rejected.height == len(rows)
    assert result.valid.schema == pl.Schema(OUTCOME_SCHEMA)
    assert (result.rejected["reason"].str.len_chars() > 0).all()


@settings(max_examples=25, deadline=None)
@given(st.permutations(list(range(6))), st.lists(st.sampled_from(["ttd_ms", "ttr_ms", "predicted_confidence"]), max_size=3))
def test_order_of_unique_rows_does_not_change_the_outcome(order: list[int], broken: list[str]) -> None:
    rows = [canonical(outcome_id=f"o-{i}", service=f"svc-{i % 2}") for i in range(6)]
    for index, field in enumerate(broken):
        rows[index][field] = -1.0
    forward = validate_outcomes(rows)
    permuted = validate_outcomes([rows[i] for i in order])
    assert permuted.valid.sort("outcome_id").equals(forward.valid.sort("outcome_id"))
    assert sorted(permuted.rejected["reason"].to_list()) == sorted(forward.rejected["reason"].to_list())


def test_rows_rejected_for_different_reasons_across_chunks_do_not_panic() -> None:
    """A frame read in several chunks, with rejected rows in different chunks, used to panic inside polars."""
    rows = [canonical(outcome_id=f"o-{i}") for i in range(600)]
    rows[150]["service"] = ""
    rows[320]["predicted_confidence"] = 1.7
    rows[590]["service"] = " "
    frame = pl.concat([pl.DataFrame(rows[a:b]) for a, b in ((0, 84), (84, 419), (419, 600))], rechunk=False)
    assert frame.n_chunks() == 3
    result = validate_outcomes(frame)
    assert result.valid.height == 597
    assert result.rejected["outcome_id"].to_list() == ["o-150", "o-320", "o-590"]
    assert result.rejected["reason"].to_list() == [
        "service: '' is empty after trimming",
        "predicted_confidence: 1.7 is outside [0, 1]",
        "service: ' ' is empty after trimming",
    ]
