"""Generated exports in every accepted format and shape, with bad rows and damage: ingest never crashes and counts add up."""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path
from typing import Any

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opx_learning.core.validation import validate_outcomes
from opx_learning.ingestion import IngestError
from opx_learning.ingestion.run import _validate_file

BOM = b"\xef\xbb\xbf"

BAD_CHANGES: list[dict[str, Any]] = [
    {"service": ""},
    {"predicted_confidence": 1.7},
    {"ttd_ms": -5},
    {"true_positive": "maybe"},
    {"recorded_at": "yesterday"},
    {"resolution_type": "NOPE"},
    {"outcome_id": None},
]


def canonical(index: int, changes: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {
        "outcome_id": f"o-{index}",
        "incident_id": f"i-{index}",
        "service": "checkout",
        "recorded_at": f"2026-01-05T{index % 24:02d}:00:00Z",
        "validated_at": f"2026-01-05T{index % 24:02d}:30:00Z",
        "true_positive": True,
        "false_positive": False,
        "root_cause": "db pool",
        "resolution_type": "FIXED",
        "ttd_ms": 60000,
        "ttr_ms": 600000,
        "predicted_confidence": 0.75,
        "human_confidence_rating": 0.5,
    }
    row.update(changes)
    return row


def camel(row: dict[str, Any], nested: bool) -> dict[str, Any]:
    flat = {
        "outcomeId": row["outcome_id"],
        "incidentId": row["incident_id"],
        "service": row["service"],
        "recordedAt": row["recorded_at"],
        "validatedAt": row["validated_at"],
        "classification.truePositive": row["true_positive"],
        "classification.falsePositive": row["false_positive"],
        "classification.rootCause": row["root_cause"],
        "classification.resolutionType": row["resolution_type"],
        "timing.ttd": row["ttd_ms"],
        "timing.ttr": row["ttr_ms"],
        "predictedConfidence": row["predicted_confidence"],
        "humanAssessment.confidenceRating": row["human_confidence_rating"],
    }
    if not nested:
        return flat
    out: dict[str, Any] = {}
    for key, value in flat.items():
        head, _, tail = key.partition(".")
        if tail:
            out.setdefault(head, {})[tail] = value
        else:
            out[key] = value
    return out


def blank(line: bytes) -> bool:
    return not line.strip(b" \t\r")


@st.composite
def exports(draw: st.DrawFn) -> tuple[str, bytes]:
    """A file (format, bytes) of 1..40 rows, some bad, some damaged."""
    kind = draw(st.sampled_from(["jsonl", "json", "csv", "parquet"]))
    shape = draw(st.sampled_from(["canonical", "camel-nested", "camel-flat"]))
    count = draw(st.integers(1, 40))
    bad = draw(st.dictionaries(st.integers(0, count - 1), st.sampled_from(range(len(BAD_CHANGES))), max_size=count))
    rows = [canonical(i, BAD_CHANGES[bad[i]] if i in bad else {}) for i in range(count)]
    records = [row if shape == "canonical" else camel(row, shape == "camel-nested") for row in rows]
    if kind == "parquet":
        frame = pl.DataFrame([{k: (None if v is None else str(v)) for k, v in r.items()} for r in rows])
        buffer = io.BytesIO()
        frame.write_parquet(buffer)
        data = buffer.getvalue()
        if draw(st.booleans()):
            data = data[: draw(st.integers(0, len(data) - 1))]  # a truncated file is unreadable as a whole
        return kind, data
    if kind == "csv":
        flat = [camel(row, False) if shape != "canonical" else row for row in rows]
        buffer = io.BytesIO()
        pl.DataFrame([{k: (None if v is None else str(v)) for k, v in r.items()} for r in flat]).write_csv(buffer)
        lines = buffer.getvalue().split(b"\n")
    else:
        lines = [json.dumps(record).encode() for record in records]
    body = list(range(1 if kind == "csv" else 0, len(lines)))
    for _ in range(draw(st.integers(0, 4))):
        candidates = [i for i in body if lines[i]]
        if not candidates:
            break
        index = draw(st.sampled_from(candidates))
        damage = draw(st.sampled_from(["flip", "truncate", "utf8", "deep"] if kind != "csv" else ["truncate", "utf8", "flip"]))
        line = lines[index]
        if damage == "flip":
            position = draw(st.integers(0, len(line) - 1))
            banned = b'\n"\r,' if kind == "csv" else b"\n"
            value = draw(st.sampled_from([byte for byte in range(256) if byte not in banned]))
            if line[position] not in banned:
                line = line[:position] + bytes([value]) + line[position + 1 :]
        elif damage == "truncate":
            line = line[: draw(st.integers(1, len(line)))]
            if kind == "csv" and line.count(b'"') % 2:
                line = line.replace(b'"', b"")
        elif damage == "utf8":
            line = line[:2] + b"\xff\xfe" + line[2:]
        else:
            depth = draw(st.sampled_from([65, 1000, 100_000]))
            line = b'{"outcomeId": "deep", "x": ' + b"[" * depth + b"]" * depth + b"}"
        lines[index] = line
    if kind == "json":
        data = b"[\n" + b",\n".join(lines) + b"\n]\n"
    else:
        data = b"\n".join(lines) + b"\n"
    if draw(st.booleans()):
        data = BOM + data
    return kind, data


def expected_rows(kind: str, data: bytes) -> int | None:
    """Input rows counted independently of the reader: non-blank lines (minus the CSV header)."""
    data = data.removeprefix(BOM)
    if kind == "jsonl":
        return sum(1 for line in data.split(b"\n") if not blank(line))
    if kind == "csv":
        return sum(1 for line in data.split(b"\n")[1:] if not blank(line))
    return None


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(exports())
def test_generated_exports_never_crash_and_every_row_is_accounted_for(export: tuple[str, bytes]) -> None:
    kind, data = export
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / f"export.{kind}"
        path.write_bytes(data)
        try:
            result = validate_outcomes(path)
        except ValueError as error:
            assert kind == "parquet" or "header" in str(error), error  # only a file unreadable as a whole
            return
        expected = expected_rows(kind, data)
        if expected is not None:
            assert result.valid.height + result.rejected.height == expected
        assert result.rejected["reason"].null_count() == 0
        assert (result.rejected["reason"].str.len_chars() > 0).all()
        if kind in ("jsonl", "csv"):
            lines = result.rejected["line"]
            assert lines.null_count() == 0
            assert lines.is_sorted() and lines.n_unique() == lines.len()
        try:
            ingested = _validate_file(path)
        except IngestError:
            # Only when no row is valid and every row lacks the same required field or is unreadable.
            assert result.valid.height == 0
            return
        assert ingested.total == result.total
