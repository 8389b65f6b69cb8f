"""Confidence calibration (docs/design.md#calibration): accuracy vs predicted confidence by band, drift and advice.

Choices beyond docs/design.md:

- `bands` always has the five bands in order; an empty band has n = 0, null
  accuracy / mean_confidence / drift / ci_low / ci_high, `sufficient` and
  `significant` False and severity INFO. `recommendations` has one entry per band,
  an empty or small band saying "insufficient data".
- Drift severities compare |drift| rounded to 9 decimals, so 0.85 - 0.80 counts as
  exactly 0.05 (WARNING) rather than 0.04999999999999993.
- `drift` and `max_abs_drift` come from the sufficient band with the largest |drift|
  (the lowest such band on ties); both are 0.0 when no band is sufficient.
- `recommended_thresholds` fit scipy's isotonic regression on the distinct confidences
  (label mean weighted by count, i.e. ties pooled); a boundary b maps to the smallest
  distinct confidence whose fitted value is >= b (with a 1e-12 tolerance for rounding).
- `drift_metrics` orders calibrations by window start (a later duplicate window
  replaces an earlier one); `change_*` is the difference to the previous row when that
  row's window ends where this one starts, else null.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import polars as pl
from scipy.optimize import isotonic_regression
from scipy.stats import norm

from opx_learning.core.schema import (
    ALGORITHM_VERSION,
    BAND_MIN_SUFFICIENT,
    BAND_NAMES,
    BANDS,
    CALIBRATION_MIN_OUTCOMES,
    DRIFT_CRITICAL,
    DRIFT_WARNING,
    UTC_DATETIME,
    outcome_frame,
)
from opx_learning.core.validation import check_numeric_input
from opx_learning.core.windows import Instant, Window, to_utc

Z_95 = float(norm.ppf(0.975))
THRESHOLD_BOUNDARIES = (0.2, 0.4, 0.6, 0.8)

BANDS_SCHEMA: dict[str, pl.DataType] = {
    "band": pl.String(),
    "lower": pl.Float64(),
    "upper": pl.Float64(),
    "n": pl.Int64(),
    "true_positives": pl.Int64(),
    "false_positives": pl.Int64(),
    "accuracy": pl.Float64(),
    "mean_confidence": pl.Float64(),
    "drift": pl.Float64(),
    "ci_low": pl.Float64(),
    "ci_high": pl.Float64(),
    "sufficient": pl.Boolean(),
    "significant": pl.Boolean(),
    "severity": pl.String(),
}

_DECIMALS = 9


class InsufficientData(Exception):
    """Fewer outcomes with a predicted confidence than calibration requires."""

    def __init__(self, outcome_count: int, required: int, skipped_count: int = 0, window: Window | None = None):
        self.outcome_count = outcome_count
        self.required = required
        self.skipped_count = skipped_count
        where = f" in [{window.start_iso}, {window.end_iso})" if window is not None else ""
        super().__init__(
            f"calibration needs at least {required} outcomes with a predicted_confidence{where}; "
            f"got {outcome_count} ({skipped_count} skipped without one)"
        )
        self._window = window

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.outcome_count, self.required, self.skipped_count, self._window))


@dataclass(frozen=True, eq=False)
class Calibration:
    """One window's calibration result; advisory only, nothing is applied."""

    calibration_id: str
    window_start: datetime
    window_end: datetime
    version: str
    bands: pl.DataFrame
    ece: float
    mce: float
    brier: float
    max_abs_drift: float
    drift: float
    drift_detected: bool
    outcome_count: int
    skipped_count: int
    recommendations: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    recommended_thresholds: dict[str, float | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (ISO-8601 instants, bands as a list of dicts)."""
        return {
            "calibration_id": self.calibration_id,
            "window_start": Window(self.window_start, self.window_end).start_iso,
            "window_end": Window(self.window_start, self.window_end).end_iso,
            "version": self.version,
            "bands": self.bands.to_dicts(),
            "ece": self.ece,
            "mce": self.mce,
            "brier": self.brier,
            "max_abs_drift": self.max_abs_drift,
            "drift": self.drift,
            "drift_detected": self.drift_detected,
            "outcome_count": self.outcome_count,
            "skipped_count": self.skipped_count,
            "recommendations": [dict(r) for r in self.recommendations],
            "recommended_thresholds": dict(self.recommended_thresholds),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibration:
        """Rebuild a calibration from `to_dict()` output."""
        return cls(
            calibration_id=str(data["calibration_id"]),
            window_start=to_utc(data["window_start"], "window_start"),
            window_end=to_utc(data["window_end"], "window_end"),
            version=str(data["version"]),
            bands=pl.DataFrame([dict(b) for b in data["bands"]], schema=BANDS_SCHEMA),
            ece=float(data["ece"]),
            mce=float(data["mce"]),
            brier=float(data["brier"]),
            max_abs_drift=float(data["max_abs_drift"]),
            drift=float(data["drift"]),
            drift_detected=bool(data["drift_detected"]),
            outcome_count=int(data["outcome_count"]),
            skipped_count=int(data["skipped_count"]),
            recommendations=tuple(dict(r) for r in data["recommendations"]),
            recommended_thresholds={
                str(k): None if v is None else float(v) for k, v in data["recommended_thresholds"].items()
            },
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Calibration):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]


def calibration_id(window: Window) -> str:
    """Deterministic id of a window's calibration: SHA-256 of `"{start}:{end}:{version}"`."""
    return hashlib.sha256(f"{window.start_iso}:{window.end_iso}:{ALGORITHM_VERSION}".encode()).hexdigest()


def band_expr(confidence: pl.Expr) -> pl.Expr:
    """Band index 0..4 of a confidence: [0,.2) [.2,.4) [.4,.6) [.6,.8) [.8,1.0]."""
    # Sums of exact comparisons with the boundaries avoid float error of floor(c * 5).
    return pl.sum_horizontal(*((confidence >= lower).cast(pl.Int8) for _, lower, _ in BANDS[1:])).cast(pl.Int8)


def calibrate(
    outcomes: pl.DataFrame | pl.LazyFrame,
    start: Instant,
    end: Instant,
    min_outcomes: int = CALIBRATION_MIN_OUTCOMES,
) -> Calibration:
    """Calibrate predicted confidence against true-positive outcomes recorded in `[start, end)`.

    Args:
        outcomes: canonical outcomes (OUTCOME_SCHEMA); rows outside the window are ignored.
        start: window start (date, datetime or ISO-8601; naive = UTC).
        end: window end, exclusive (`...T23:59:59.999Z` means the end of that day).
        min_outcomes: fewest outcomes with a predicted confidence to calibrate on.

    Returns:
        The window's `Calibration`.

    Raises:
        InsufficientData: fewer than `min_outcomes` outcomes with a predicted confidence.
        WindowError: start/end unreadable, outside 1970-01-01..2200-01-01 UTC, or end <= start.
        TypeError, ValueError: bad `outcomes` or `min_outcomes` (named in the message).
        ValueError: rows in the window hold a NaN, infinite or out-of-[0, 1] `predicted_confidence`
            (unvalidated input is refused, not calibrated; the message names the column and count).
    """
    window = Window.parse(start, end)
    if isinstance(min_outcomes, bool) or not isinstance(min_outcomes, int) or min_outcomes < 1:
        raise ValueError(f"min_outcomes: {min_outcomes!r} must be a whole number >= 1")
    check_numeric_input(outcomes, window, ("predicted_confidence",))
    frame = outcome_frame(outcomes, ("recorded_at", "predicted_confidence", "true_positive"))
    recorded = pl.col("recorded_at")
    current = frame.select("recorded_at", "predicted_confidence", "true_positive").filter(
        (recorded >= window.start) & (recorded < window.end)
    )
    confidence = pl.col("predicted_confidence")
    skipped_q = current.select(confidence.is_null().sum().cast(pl.Int64).alias("skipped"))
    # Everything below needs only the scored (confidence, label) pairs: collected compactly, in row order,
    # in one chunk so that the float sums do not depend on the source's chunking.
    scored_q = current.filter(confidence.is_not_null()).select(
        confidence.cast(pl.Float64).alias("confidence"), "true_positive"
    )
    skipped_df, scored = pl.collect_all([skipped_q, scored_q], engine="streaming")
    scored = scored.rechunk()
    confidence = pl.col("confidence")
    label = pl.col("true_positive").cast(pl.Float64)
    bands_raw = scored.group_by(band_expr(confidence).alias("index")).agg(
        n=pl.len().cast(pl.Int64),
        true_positives=pl.col("true_positive").sum().cast(pl.Int64),
        confidence_sum=confidence.sum(),
        squared_error=((confidence - label) ** 2).sum(),
    ).sort("index")
    skipped = int(skipped_df.item())
    total = int(bands_raw["n"].sum())
    if total < min_outcomes:
        raise InsufficientData(total, min_outcomes, skipped, window)

    bands = _bands_table(bands_raw)
    brier = float(bands_raw["squared_error"].sum()) / total
    rows = bands.to_dicts()
    filled = [r for r in rows if r["n"] > 0]
    ece = sum(r["n"] / total * abs(r["drift"]) for r in filled)
    sufficient = [r for r in rows if r["sufficient"]]
    worst = max(sufficient, key=lambda r: abs(r["drift"]), default=None)
    max_abs_drift = abs(worst["drift"]) if worst else 0.0
    return Calibration(
        calibration_id=calibration_id(window),
        window_start=window.start,
        window_end=window.end,
        version=ALGORITHM_VERSION,
        bands=bands,
        ece=float(ece),
        mce=float(max_abs_drift),
        brier=brier,
        max_abs_drift=float(max_abs_drift),
        drift=float(worst["drift"]) if worst else 0.0,
        drift_detected=round(max_abs_drift, _DECIMALS) > DRIFT_CRITICAL,
        outcome_count=total,
        skipped_count=skipped,
        recommendations=tuple(_recommendation(r) for r in rows),
        recommended_thresholds=_thresholds(scored),
    )


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (95 % by default)."""
    if n <= 0:
        raise ValueError(f"n: {n} must be positive")
    p = successes / n
    denominator = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, center - half), min(1.0, center + half)


def severity(drift: float | None, sufficient: bool) -> str:
    """INFO (insufficient or |drift| < 0.05), WARNING (0.05..0.15 inclusive) or CRITICAL (> 0.15)."""
    if not sufficient or drift is None:
        return "INFO"
    size = round(abs(drift), _DECIMALS)
    if size > DRIFT_CRITICAL:
        return "CRITICAL"
    if size >= DRIFT_WARNING:
        return "WARNING"
    return "INFO"


def _bands_table(raw: pl.DataFrame) -> pl.DataFrame:
    by_index = {int(r["index"]): r for r in raw.to_dicts()}
    rows = []
    for index, (name, lower, upper) in enumerate(BANDS):
        r = by_index.get(index)
        n = int(r["n"]) if r else 0
        tp = int(r["true_positives"]) if r else 0
        row: dict[str, Any] = {
            "band": name,
            "lower": lower,
            "upper": upper,
            "n": n,
            "true_positives": tp,
            "false_positives": n - tp,
            "accuracy": None,
            "mean_confidence": None,
            "drift": None,
            "ci_low": None,
            "ci_high": None,
            "sufficient": n >= BAND_MIN_SUFFICIENT,
            "significant": False,
        }
        if n:
            accuracy = tp / n
            mean_confidence = float(r["confidence_sum"]) / n
            ci_low, ci_high = wilson_interval(tp, n)
            row |= {
                "accuracy": accuracy,
                "mean_confidence": mean_confidence,
                "drift": accuracy - mean_confidence,
                "ci_low": ci_low,
                "ci_high": ci_high,
                "significant": not ci_low <= mean_confidence <= ci_high,
            }
        row["severity"] = severity(row["drift"], row["sufficient"])
        rows.append(row)
    return pl.DataFrame(rows, schema=BANDS_SCHEMA)


def _recommendation(band: Mapping[str, Any]) -> dict[str, Any]:
    n, drift = band["n"], band["drift"]
    if not band["sufficient"]:
        message = f"insufficient data ({n} outcomes, {BAND_MIN_SUFFICIENT} needed); no recommendation"
    else:
        detail = (
            f"accuracy {band['accuracy']:.3f} vs mean confidence {band['mean_confidence']:.3f}, drift {drift:+.3f}"
        )
        level = band["severity"]
        if level == "INFO":
            message = f"well calibrated ({detail})"
        else:
            strength = "slightly" if level == "WARNING" else "strongly"
            direction = "overconfident" if drift < 0 else "underconfident"
            message = f"{strength} {direction} ({detail}); review the band, nothing is changed automatically"
    return {"band": band["band"], "severity": band["severity"], "message": message, "actionable": False}


def _run_starts(values: np.ndarray) -> np.ndarray:
    """Indices where a run of equal consecutive values begins."""
    return np.concatenate(([0], np.flatnonzero(values[1:] != values[:-1]) + 1))


def _thresholds(scored: pl.DataFrame) -> dict[str, float | None]:
    positive = scored["true_positive"].fill_null(False).to_numpy()
    # One sort of (confidence bits << 1 | label): non-negative floats order as their bit patterns,
    # the shift drops the sign bit (so -0.0 sorts as 0.0), and the label rides in the free low bit.
    # The order of a label within equal confidences does not matter: they are pooled below.
    bits = scored["confidence"].to_numpy().view(np.uint64)
    packed = np.left_shift(bits, np.uint64(1))
    packed |= positive
    del bits, positive
    packed.sort()
    label = (packed & np.uint64(1)).astype(bool)
    packed >>= np.uint64(1)
    x = packed.view(np.float64)
    del packed
    # Equal confidences must share one fitted value: pool them (label mean, weighted by count).
    starts = _run_starts(x)
    # The L2 isotonic fit is constant on runs of equal values (PAVA merges them all or none),
    # so pooling those runs is exact and shrinks 10M binary labels several-fold.
    if starts.size < x.size:
        weight = np.diff(np.append(starts, x.size)).astype(np.float64)
        rate = np.add.reduceat(label, starts, dtype=np.float64) / weight
        x = x[starts]
        runs = _run_starts(rate)
        weight, rate = np.add.reduceat(weight, runs), rate[runs]
    else:
        # No ties: every weight is 1, so a run's weight is its length.
        runs = _run_starts(label)
        weight, rate = np.diff(np.append(runs, x.size)).astype(np.float64), label[runs].astype(np.float64)
    del label, starts
    fitted = isotonic_regression(rate, weights=weight, increasing=True).x
    first_x = x[runs]
    result: dict[str, float | None] = {}
    for boundary in THRESHOLD_BOUNDARIES:
        reached = np.flatnonzero(fitted >= boundary - 1e-12)
        result[str(boundary)] = float(first_x[reached[0]]) if reached.size else None
    return result


def drift_metrics(calibrations: Sequence[Calibration]) -> pl.DataFrame:
    """Month-by-month drift series with the change against the previous month.

    Returns:
        Columns window_start, window_end, ece, max_abs_drift, drift, drift_<BAND> for each
        band, then change_<metric> for each of those metrics; one row per window, ascending.
    """
    metrics = ["ece", "max_abs_drift", "drift", *(f"drift_{name}" for name in BAND_NAMES)]
    schema: dict[str, pl.DataType] = {"window_start": UTC_DATETIME, "window_end": UTC_DATETIME}
    schema |= {m: pl.Float64() for m in metrics}
    schema |= {f"change_{m}": pl.Float64() for m in metrics}
    latest: dict[datetime, Calibration] = {}
    for item in calibrations:
        latest[item.window_start] = item
    rows: list[dict[str, Any]] = []
    for start in sorted(latest):
        item = latest[start]
        band_drift = dict(zip(item.bands["band"].to_list(), item.bands["drift"].to_list(), strict=True))
        row: dict[str, Any] = {
            "window_start": item.window_start,
            "window_end": item.window_end,
            "ece": item.ece,
            "max_abs_drift": item.max_abs_drift,
            "drift": item.drift,
        }
        row |= {f"drift_{name}": band_drift.get(name) for name in BAND_NAMES}
        before = rows[-1] if rows and rows[-1]["window_end"] == item.window_start else None
        for m in metrics:
            value, previous = row[m], before[m] if before else None
            row[f"change_{m}"] = None if value is None or previous is None else value - previous
        rows.append(row)
    return pl.DataFrame(rows, schema=schema)
