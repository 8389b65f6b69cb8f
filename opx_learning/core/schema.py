"""Canonical outcome schema (SPEC §1) and shared constants."""

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
