"""Canonical outcome schema (docs/design.md#outcomes) and shared constants."""

from __future__ import annotations

import polars as pl

# Bumped when a computation changes meaning; part of every deterministic id.
ALGORITHM_VERSION = "1"

RESOLUTION_TYPES = ("FIXED", "MITIGATED", "FALSE_ALARM", "DUPLICATE", "OTHER")
ResolutionType = pl.Enum(list(RESOLUTION_TYPES))
UTC_DATETIME = pl.Datetime("us", "UTC")

OUTCOME_SCHEMA: dict[str, pl.DataType] = {
    "outcome_id": pl.String(),
    "incident_id": pl.String(),
    "service": pl.String(),
    "recorded_at": UTC_DATETIME,
    "validated_at": UTC_DATETIME,
    "true_positive": pl.Boolean(),
    "false_positive": pl.Boolean(),
    "root_cause": pl.String(),
    "resolution_type": ResolutionType,
    "ttd_ms": pl.Float64(),
    "ttr_ms": pl.Float64(),
    "predicted_confidence": pl.Float64(),
    "human_confidence_rating": pl.Float64(),
}
OUTCOME_COLUMNS = tuple(OUTCOME_SCHEMA)

# The platform's nested camelCase JSON paths for each canonical column.
CAMEL_CASE_PATHS: dict[str, tuple[str, ...]] = {
    "outcome_id": ("outcomeId",),
    "incident_id": ("incidentId",),
    "service": ("service",),
    "recorded_at": ("recordedAt",),
    "validated_at": ("validatedAt",),
    "true_positive": ("classification", "truePositive"),
    "false_positive": ("classification", "falsePositive"),
    "root_cause": ("classification", "rootCause"),
    "resolution_type": ("classification", "resolutionType"),
    "ttd_ms": ("timing", "ttd"),
    "ttr_ms": ("timing", "ttr"),
    "predicted_confidence": ("predictedConfidence",),
    "human_confidence_rating": ("humanAssessment", "confidenceRating"),
}

ALL_SERVICES = "ALL"
CALIBRATION_MIN_OUTCOMES = 30
BAND_MIN_SUFFICIENT = 20
DRIFT_CRITICAL = 0.15
DRIFT_WARNING = 0.05
FP_RATE_WARNING = 0.30
# The runbook's error rates over an hour (alerts) or a day (checklist): above ELEVATED is P2 / WARN, above HIGH P1 / FAIL.
ERROR_RATE_ELEVATED = 0.10
ERROR_RATE_HIGH = 0.20
EMERGING_P_VALUE = 0.01

BANDS: tuple[tuple[str, float, float], ...] = (
    ("VERY_LOW", 0.0, 0.2),
    ("LOW", 0.2, 0.4),
    ("MEDIUM", 0.4, 0.6),
    ("HIGH", 0.6, 0.8),
    ("VERY_HIGH", 0.8, 1.0),
)
BAND_NAMES = tuple(name for name, _, _ in BANDS)


def empty_outcomes() -> pl.DataFrame:
    """An empty outcomes frame with the canonical schema."""
    return pl.DataFrame(schema=OUTCOME_SCHEMA)


def _dtype_ok(actual: pl.DataType, expected: pl.DataType) -> bool:
    if isinstance(expected, pl.Datetime):
        return isinstance(actual, pl.Datetime)
    if expected == pl.Boolean:
        return actual == pl.Boolean
    if expected == pl.Float64:
        return actual.is_numeric()
    return actual in (pl.String, pl.Categorical) or isinstance(actual, pl.Enum)


def outcome_frame(outcomes: pl.DataFrame | pl.LazyFrame, columns: tuple[str, ...]) -> pl.LazyFrame:
    """A lazy view of canonical outcomes, checked for the columns a computation reads.

    Naive `recorded_at` / `validated_at` values are taken as UTC.

    Raises:
        TypeError: `outcomes` is not a polars frame.
        ValueError: a needed column is missing or has an unusable type (named in the message).
    """
    if isinstance(outcomes, pl.DataFrame):
        frame = outcomes.lazy()
    elif isinstance(outcomes, pl.LazyFrame):
        frame = outcomes
    else:
        raise TypeError(
            f"outcomes: expected a polars DataFrame or LazyFrame of canonical outcomes, "
            f"got {type(outcomes).__name__} (validate raw records with opx.validate_outcomes(data).valid)"
        )
    schema = frame.collect_schema()
    missing = [name for name in columns if name not in schema]
    if missing:
        raise ValueError(
            f"outcomes: missing column(s) {', '.join(missing)}; pass canonical outcomes "
            f"(opx.validate_outcomes(data).valid)"
        )
    wrong = [
        f"{name} is {schema[name]}, expected {OUTCOME_SCHEMA[name]}"
        for name in columns
        if not _dtype_ok(schema[name], OUTCOME_SCHEMA[name])
    ]
    if wrong:
        raise ValueError(f"outcomes: {'; '.join(wrong)} (opx.validate_outcomes(data).valid has the right types)")
    naive = [
        name
        for name in columns
        if isinstance(schema[name], pl.Datetime) and schema[name].time_zone is None  # type: ignore[union-attr]
    ]
    if naive:
        frame = frame.with_columns(pl.col(name).dt.replace_time_zone("UTC") for name in naive)
    return frame
