"""Recommended thresholds equal a plain isotonic fit over the distinct confidences (no run pooling)."""

import random
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import isotonic_regression

import opx_learning as opx
from opx_learning.core.schema import OUTCOME_SCHEMA

START = datetime(2026, 1, 1, tzinfo=UTC)


def reference_thresholds(confidence: list[float], label: list[bool]) -> dict[str, float | None]:
    """Fit one point per distinct confidence (mean label, weight = count) and read the boundaries."""
    values = sorted(set(confidence))
    weights = np.array([sum(1 for c in confidence if c == v) for v in values], dtype=float)
    means = np.array(
        [sum(lab for c, lab in zip(confidence, label, strict=True) if c == v) / w for v, w in zip(values, weights, strict=True)]
    )
    fitted = isotonic_regression(means, weights=weights).x
    result: dict[str, float | None] = {}
    for boundary in (0.2, 0.4, 0.6, 0.8):
        hits = [v for v, f in zip(values, fitted, strict=True) if f >= boundary - 1e-12]
        result[str(boundary)] = hits[0] if hits else None
    return result


def frame(confidence: list[float], label: list[bool]) -> pl.DataFrame:
    n = len(confidence)
    times = [START + timedelta(minutes=i) for i in range(n)]
    return pl.DataFrame(
        {
            "outcome_id": [f"o{i}" for i in range(n)],
            "incident_id": [f"i{i}" for i in range(n)],
            "service": ["svc"] * n,
            "recorded_at": times,
            "validated_at": times,
            "true_positive": label,
            "false_positive": [not lab for lab in label],
            "root_cause": ["x"] * n,
            "resolution_type": ["FIXED"] * n,
            "ttd_ms": [1.0] * n,
            "ttr_ms": [1.0] * n,
            "predicted_confidence": confidence,
            "human_confidence_rating": [None] * n,
        },
        schema=OUTCOME_SCHEMA,
    )


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 20).map(lambda k: k / 20), st.booleans()),
        min_size=30,
        max_size=120,
    ),
    st.randoms(use_true_random=False),
)
def test_thresholds_match_a_direct_isotonic_fit(points: list[tuple[float, bool]], rnd: random.Random) -> None:
    rnd.shuffle(points)
    confidence = [c for c, _ in points]
    label = [lab for _, lab in points]
    result = opx.calibrate(frame(confidence, label), START, START + timedelta(days=1))
    assert result.recommended_thresholds == reference_thresholds(confidence, label)


def test_distinct_confidences_match_the_reference() -> None:
    rng = np.random.default_rng(3)
    confidence = rng.random(400).round(9).tolist()
    label = (rng.random(400) < np.array(confidence)).tolist()
    result = opx.calibrate(frame(confidence, label), START, START + timedelta(days=1))
    assert result.recommended_thresholds == reference_thresholds(confidence, label)
