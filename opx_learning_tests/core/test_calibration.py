"""Calibration: known answers by hand, a pure-Python reference and large synthetic checks."""

from __future__ import annotations

import hashlib
import json
import math
import pickle
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opx_learning.core.calibration import (
    BANDS_SCHEMA,
    Calibration,
    InsufficientData,
    calibrate,
    drift_metrics,
    severity,
    wilson_interval,
)
from opx_learning.core.schema import OUTCOME_SCHEMA

T0 = datetime(2026, 1, 1, tzinfo=UTC)
JAN = ("2026-01-01", "2026-02-01")


def outcomes(pairs: list[tuple[float | None, bool]], start: datetime = T0) -> pl.DataFrame:
    """Outcomes from (predicted_confidence, true_positive) pairs, one minute apart."""
    n = len(pairs)
    recorded = [start + timedelta(minutes=i) for i in range(n)]
    return pl.DataFrame(
        {
            "outcome_id": [f"o-{i}" for i in range(n)],
            "incident_id": [f"i-{i}" for i in range(n)],
            "service": ["api"] * n,
            "recorded_at": recorded,
            "validated_at": recorded,
            "true_positive": [tp for _, tp in pairs],
            "false_positive": [not tp for _, tp in pairs],
            "root_cause": ["disk full"] * n,
            "resolution_type": ["FIXED"] * n,
            "ttd_ms": [1.0] * n,
            "ttr_ms": [2.0] * n,
            "predicted_confidence": [c for c, _ in pairs],
            "human_confidence_rating": [None] * n,
        },
        schema=OUTCOME_SCHEMA,
    )


def repeat(confidence: float | None, n: int, positives: int) -> list[tuple[float | None, bool]]:
    return [(confidence, i < positives) for i in range(n)]


def band(result: Calibration, name: str) -> dict[str, Any]:
    return next(row for row in result.bands.to_dicts() if row["band"] == name)


def test_wilson_interval_known_values() -> None:
    # 8/10: p = .8, z^2 = 3.8415; centre = (.8 + .19207) / 1.38415 = .71674;
    # half = 1.95996 / 1.38415 * sqrt(.016 + .0096036) = .22658 -> [.49016, .94332]
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.49016, abs=1e-5) and high == pytest.approx(0.94332, abs=1e-5)
    # 0/20: upper = z^2 / (n + z^2) = 3.8415 / 23.8415 = .16113
    low, high = wilson_interval(0, 20)
    assert low == 0.0 and high == pytest.approx(0.16113, abs=1e-5)
    # 50/100: symmetric around .5, half = 1.95996 / 1.03841 * sqrt(.0025 + .000096) = .09617
    low, high = wilson_interval(50, 100)
    assert (low + high) / 2 == pytest.approx(0.5) and high - 0.5 == pytest.approx(0.09617, abs=1e-5)


def test_band_edges() -> None:
    confidences = [0.0, 0.19999, 0.2, 0.39999, 0.4, 0.6, 0.79999, 0.8, 1.0] + [0.5] * 21
    result = calibrate(outcomes([(c, True) for c in confidences]), *JAN)
    counts = dict(zip(result.bands["band"].to_list(), result.bands["n"].to_list(), strict=True))
    assert counts == {"VERY_LOW": 2, "LOW": 2, "MEDIUM": 22, "HIGH": 2, "VERY_HIGH": 2}
    assert result.bands["lower"].to_list() == [0.0, 0.2, 0.4, 0.6, 0.8]
    assert result.bands["upper"].to_list() == [0.2, 0.4, 0.6, 0.8, 1.0]


def test_known_answer_ece_brier_drift_and_skips() -> None:
    pairs = repeat(0.9, 20, 14) + repeat(0.3, 20, 6) + repeat(0.5, 10, 5) + repeat(None, 3, 1)
    frame = pl.concat([outcomes(pairs), outcomes(repeat(0.9, 40, 0), start=datetime(2026, 2, 1, tzinfo=UTC))])
    result = calibrate(frame, *JAN)
    assert result.bands.schema == pl.Schema(BANDS_SCHEMA)
    assert (result.outcome_count, result.skipped_count) == (50, 3)
    high = band(result, "VERY_HIGH")
    assert (high["n"], high["true_positives"], high["false_positives"]) == (20, 14, 6)
    assert high["accuracy"] == pytest.approx(0.7) and high["mean_confidence"] == pytest.approx(0.9)
    assert high["drift"] == pytest.approx(-0.2)  # overconfident
    assert high["sufficient"] and high["severity"] == "CRITICAL"
    # Wilson(14, 20) = [.48102, .85452] excludes .9
    assert high["ci_low"] == pytest.approx(0.48102, abs=1e-5) and high["ci_high"] == pytest.approx(0.85452, abs=1e-5)
    assert high["significant"] is True
    low = band(result, "LOW")
    assert low["drift"] == pytest.approx(0.0, abs=1e-12) and low["severity"] == "INFO" and not low["significant"]
    medium = band(result, "MEDIUM")
    assert (medium["n"], medium["sufficient"], medium["severity"]) == (10, False, "INFO")
    empty = band(result, "VERY_LOW")
    assert empty["n"] == 0 and empty["accuracy"] is None and empty["drift"] is None and empty["ci_low"] is None
    # ECE = 20/50 * .2 + 20/50 * 0 + 10/50 * 0 = .08
    assert result.ece == pytest.approx(0.08)
    # Brier: .9 band 14 * .01 + 6 * .81 = 5.0; .3 band 6 * .49 + 14 * .09 = 4.2; .5 band 10 * .25 = 2.5
    # -> 11.7 / 50 = .234
    assert result.brier == pytest.approx(0.234)
    assert result.max_abs_drift == pytest.approx(0.2) and result.mce == pytest.approx(0.2)
    assert result.drift == pytest.approx(-0.2) and result.drift_detected is True
    recs = {r["band"]: r for r in result.recommendations}
    assert list(recs) == ["VERY_LOW", "LOW", "MEDIUM", "HIGH", "VERY_HIGH"]
    assert all(r["actionable"] is False for r in recs.values())
    assert "strongly overconfident" in recs["VERY_HIGH"]["message"]
    assert "well calibrated" in recs["LOW"]["message"]
    assert "insufficient data" in recs["MEDIUM"]["message"] and "insufficient data" in recs["VERY_LOW"]["message"]
    # The band is its own field: the message does not repeat it (printed as "VERY_LOW: insufficient data ...").
    assert recs["VERY_LOW"]["message"] == "insufficient data (0 outcomes, 20 needed); no recommendation"
    assert not any(r["message"].startswith(r["band"]) for r in recs.values())


def test_severity_boundaries() -> None:
    assert severity(0.0499, True) == "INFO"
    assert severity(0.05, True) == "WARNING" and severity(-0.05, True) == "WARNING"
    assert severity(0.15, True) == "WARNING" and severity(-0.15, True) == "WARNING"
    assert severity(0.1501, True) == "CRITICAL"
    assert severity(0.9, False) == "INFO" and severity(None, True) == "INFO"


def test_severity_boundaries_from_data() -> None:
    # VERY_HIGH: 17/20 = .85 vs .8 -> drift .85 - .8 (= .04999999999999993 in floats) counts as .05: WARNING
    # HIGH: 15/20 = .75 vs .6 -> drift .15 (= .15000000000000002 in floats): WARNING
    # LOW: 8/20 = .4 vs .2 -> drift .2: CRITICAL; MEDIUM: 10/20 = .5 vs .5 -> INFO
    pairs = repeat(0.8, 20, 17) + repeat(0.6, 20, 15) + repeat(0.2, 20, 8) + repeat(0.5, 20, 10)
    result = calibrate(outcomes(pairs), *JAN)
    assert [band(result, b)["severity"] for b in ("LOW", "MEDIUM", "HIGH", "VERY_HIGH")] == [
        "CRITICAL", "INFO", "WARNING", "WARNING"]
    recs = {r["band"]: r["message"] for r in result.recommendations}
    assert "slightly underconfident" in recs["VERY_HIGH"] and "strongly underconfident" in recs["LOW"]
    assert result.max_abs_drift == pytest.approx(0.2) and result.drift == pytest.approx(0.2)
    # without the LOW band the worst drift is exactly .15: not "> .15", so no drift detected
    result = calibrate(outcomes(repeat(0.8, 20, 17) + repeat(0.6, 20, 15)), *JAN)
    assert result.max_abs_drift == pytest.approx(0.15) and result.drift_detected is False


def test_insufficient_data_at_29_but_not_30() -> None:
    with pytest.raises(InsufficientData) as info:
        calibrate(outcomes(repeat(0.5, 29, 10) + repeat(None, 5, 5)), *JAN)
    assert (info.value.outcome_count, info.value.required) == (29, 30)
    assert "30" in str(info.value) and "29" in str(info.value)
    copy = pickle.loads(pickle.dumps(info.value))
    assert (copy.outcome_count, copy.required, str(copy)) == (29, 30, str(info.value))
    result = calibrate(outcomes(repeat(0.5, 30, 10) + repeat(None, 5, 5)), *JAN)
    assert (result.outcome_count, result.skipped_count) == (30, 5)
    assert calibrate(outcomes(repeat(0.5, 5, 1)), *JAN, min_outcomes=5).outcome_count == 5
    with pytest.raises(InsufficientData):
        calibrate(outcomes(repeat(0.5, 100, 10)), "2026-03-01", "2026-04-01")


def test_no_sufficient_band_gives_zero_drift() -> None:
    pairs = repeat(0.1, 10, 10) + repeat(0.5, 10, 0) + repeat(0.9, 10, 0)
    result = calibrate(outcomes(pairs), *JAN)
    assert result.max_abs_drift == 0.0 and result.drift == 0.0 and result.drift_detected is False
    # ECE still uses every non-empty band: (10 * .9 + 10 * .5 + 10 * .9) / 30 = .7667
    assert result.ece == pytest.approx(23 / 30)


def test_isotonic_thresholds_on_crafted_data() -> None:
    # rates: .1 -> 1/10, .3 -> 3/10, .35 -> 2/10 (violates monotonicity: pooled with .3 to 5/20 = .25),
    # .5 -> 5/10, .7 -> 7/10, .9 -> 10/10. Fitted: .1, .25, .25, .5, .7, 1.0
    pairs = (repeat(0.1, 10, 1) + repeat(0.3, 10, 3) + repeat(0.35, 10, 2) + repeat(0.5, 10, 5)
             + repeat(0.7, 10, 7) + repeat(0.9, 10, 10))
    result = calibrate(outcomes(pairs), *JAN)
    assert result.recommended_thresholds == {"0.2": 0.3, "0.4": 0.5, "0.6": 0.7, "0.8": 0.9}
    # fitted values never reach .8 (best is 7/10): that boundary is None
    capped = calibrate(outcomes(repeat(0.1, 15, 0) + repeat(0.9, 15, 10)), *JAN)
    assert capped.recommended_thresholds == {"0.2": 0.9, "0.4": 0.9, "0.6": 0.9, "0.8": None}


def test_ids_serialisation_and_round_trip() -> None:
    result = calibrate(outcomes(repeat(0.9, 20, 14) + repeat(0.3, 20, 6)), "2026-01-01", "2026-01-31T23:59:59.999Z")
    text = "2026-01-01T00:00:00.000Z:2026-02-01T00:00:00.000Z:1"
    assert result.calibration_id == hashlib.sha256(text.encode()).hexdigest()
    assert result.window_end == datetime(2026, 2, 1, tzinfo=UTC)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["window_start"] == "2026-01-01T00:00:00.000Z"
    assert isinstance(data["bands"], list) and data["bands"][4]["band"] == "VERY_HIGH"
    again = Calibration.from_dict(data)
    assert again == result
    assert again.bands.equals(result.bands)
    assert again.window_start == result.window_start


def test_perfectly_calibrated_data() -> None:
    rng = np.random.default_rng(7)
    n = 200_000
    confidence = rng.random(n)
    label = rng.random(n) < confidence
    recorded = pl.datetime_range(T0, T0 + timedelta(seconds=n - 1), "1s", eager=True, time_zone="UTC")
    frame = pl.DataFrame(
        {"recorded_at": recorded, "predicted_confidence": confidence, "true_positive": label},
    )
    result = calibrate(frame, *JAN)
    assert result.outcome_count == n
    assert result.max_abs_drift < 0.02 and result.ece < 0.02 and not result.drift_detected
    assert all(r["severity"] == "INFO" for r in result.recommendations)
    # Brier of a calibrated uniform forecast: E[c(1-c)] = 1/6
    assert result.brier == pytest.approx(1 / 6, abs=0.005)
    for boundary, threshold in result.recommended_thresholds.items():
        assert threshold == pytest.approx(float(boundary), abs=0.03)


def test_overconfident_data_is_detected() -> None:
    rng = np.random.default_rng(11)
    n = 50_000
    confidence = rng.random(n)
    label = rng.random(n) < confidence * 0.7  # accuracy is 70 % of the stated confidence
    recorded = pl.datetime_range(T0, T0 + timedelta(seconds=n - 1), "1s", eager=True, time_zone="UTC")
    result = calibrate(pl.DataFrame({"recorded_at": recorded, "predicted_confidence": confidence,
                                     "true_positive": label}), *JAN)
    # VERY_HIGH: mean confidence .9, accuracy .63 -> drift about -.27
    assert result.drift == pytest.approx(-0.27, abs=0.02) and result.drift_detected
    assert band(result, "VERY_HIGH")["severity"] == "CRITICAL"
    # .7 * c reaches .4 at c = .571; it never reaches .8, except that isotonic fits may pool the very
    # last few points (all positives) into a block at 1.0
    assert result.recommended_thresholds["0.4"] == pytest.approx(0.571, abs=0.03)
    top = result.recommended_thresholds["0.8"]
    assert top is None or top > 0.99


def test_drift_metrics_series() -> None:
    jan = calibrate(outcomes(repeat(0.9, 20, 14) + repeat(0.3, 20, 6)), *JAN)
    feb = calibrate(outcomes(repeat(0.9, 20, 16) + repeat(0.3, 20, 6), start=datetime(2026, 2, 1, tzinfo=UTC)),
                    "2026-02-01", "2026-03-01")
    apr = calibrate(outcomes(repeat(0.9, 20, 18) + repeat(0.3, 20, 6), start=datetime(2026, 4, 1, tzinfo=UTC)),
                    "2026-04-01", "2026-05-01")
    series = drift_metrics([apr, jan, feb])
    assert series["window_start"].to_list() == [jan.window_start, feb.window_start, apr.window_start]
    # VERY_HIGH drift: jan .7 - .9 = -.2, feb .8 - .9 = -.1, apr .9 - .9 = 0
    assert series["drift_VERY_HIGH"].to_list() == pytest.approx([-0.2, -0.1, 0.0], abs=1e-12)
    assert series["drift_VERY_LOW"].to_list() == [None, None, None]
    assert series["change_drift_VERY_HIGH"][0] is None
    assert series["change_drift_VERY_HIGH"][1] == pytest.approx(0.1)
    assert series["change_drift_VERY_HIGH"][2] is None  # March is missing: no month-on-month change
    # ece jan = 20/40 * .2 = .1, feb = 20/40 * .1 = .05
    assert series["ece"].to_list()[:2] == pytest.approx([0.1, 0.05])
    assert series["change_ece"][1] == pytest.approx(-0.05)
    assert series["change_max_abs_drift"][1] == pytest.approx(-0.1)
    assert drift_metrics([]).height == 0
    assert drift_metrics([]).columns == series.columns


# ---- reference implementation ---------------------------------------------------------------------


def reference(pairs: list[tuple[float, bool]]) -> dict[str, Any]:
    edges = [0.2, 0.4, 0.6, 0.8]
    groups: dict[int, list[tuple[float, bool]]] = {i: [] for i in range(5)}
    for c, y in pairs:
        groups[sum(c >= e for e in edges)].append((c, y))
    n_total = len(pairs)
    ece, worst = 0.0, None
    for members in groups.values():
        if not members:
            continue
        accuracy = sum(y for _, y in members) / len(members)
        drift = accuracy - sum(c for c, _ in members) / len(members)
        ece += len(members) / n_total * abs(drift)
        if len(members) >= 20 and (worst is None or abs(drift) > abs(worst)):
            worst = drift
    brier = sum((c - y) ** 2 for c, y in pairs) / n_total
    return {"ece": ece, "brier": brier, "max_abs_drift": abs(worst or 0.0), "drift": worst or 0.0,
            "n": [len(groups[i]) for i in range(5)]}


pair_strategy = st.tuples(
    st.one_of(st.sampled_from([0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 0.5]), st.floats(0, 1)), st.booleans()
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(pair_strategy, min_size=30, max_size=120), st.randoms(use_true_random=False))
def test_matches_reference_and_ignores_row_order(pairs: list[tuple[float, bool]], rnd: random.Random) -> None:
    result = calibrate(outcomes(pairs), *JAN)
    expected = reference(pairs)
    assert result.bands["n"].to_list() == expected["n"]
    for name in ("ece", "brier", "max_abs_drift", "drift"):
        assert getattr(result, name) == pytest.approx(expected[name], abs=1e-9), name
    shuffled = pairs[:]
    rnd.shuffle(shuffled)
    again = calibrate(outcomes(shuffled), *JAN)
    assert again.recommended_thresholds == result.recommended_thresholds
    assert again.bands.select("band", "n", "true_positives", "severity").equals(
        result.bands.select("band", "n", "true_positives", "severity"))
    for name in ("ece", "brier", "max_abs_drift"):
        assert math.isclose(getattr(again, name), getattr(result, name), abs_tol=1e-12)


def test_integration_with_synthetic_generator() -> None:
    synthetic = pytest.importorskip("opx_learning.core.synthetic")
    frame = synthetic.generate_outcomes("2026-01-01", "2026-02-01", seed=5)
    result = calibrate(frame, *JAN)
    in_window = frame.filter(
        (pl.col("recorded_at") >= datetime(2026, 1, 1, tzinfo=UTC))
        & (pl.col("recorded_at") < datetime(2026, 2, 1, tzinfo=UTC))
    )
    assert result.outcome_count + result.skipped_count == in_window.height
    assert result.skipped_count == in_window["predicted_confidence"].null_count()
