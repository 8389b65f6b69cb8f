"""Per-service calibration with empirical-Bayes shrinkage: known answers by hand, the bar cases, degenerate cases."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from scipy.stats import beta as beta_distribution

import opx_learning as opx
from opx_learning.core.calibration import InsufficientData, calibrate, wilson_interval
from opx_learning.core.schema import OUTCOME_SCHEMA
from opx_learning.core.service_calibration import (
    SERVICE_BANDS_SCHEMA,
    calibrate_by_service,
    service_band_priors,
)
from opx_learning.core.windows import WindowError

T0 = datetime(2026, 1, 1, tzinfo=UTC)
JAN = ("2026-01-01", "2026-02-01")


def outcomes(groups: list[tuple[str, float | None, int, int]], root_cause: str = "disk full") -> pl.DataFrame:
    """Outcomes from (service, confidence, n, true positives) groups, ten seconds apart in January 2026."""
    rows = []
    for service, confidence, n, positives in groups:
        rows += [(service, confidence, i < positives) for i in range(n)]
    count = len(rows)
    recorded = [T0 + timedelta(seconds=10 * i) for i in range(count)]
    return pl.DataFrame(
        {
            "outcome_id": [f"o-{i}" for i in range(count)],
            "incident_id": [f"i-{i}" for i in range(count)],
            "service": [r[0] for r in rows],
            "recorded_at": recorded,
            "validated_at": recorded,
            "true_positive": [r[2] for r in rows],
            "false_positive": [not r[2] for r in rows],
            "root_cause": [root_cause] * count,
            "resolution_type": ["FIXED"] * count,
            "ttd_ms": [1.0] * count,
            "ttr_ms": [2.0] * count,
            "predicted_confidence": [r[1] for r in rows],
            "human_confidence_rating": [None] * count,
        },
        schema=OUTCOME_SCHEMA,
    )


def row(frame: pl.DataFrame, service: str, band: str) -> dict:
    (found,) = frame.filter((pl.col("service") == service) & (pl.col("band") == band)).to_dicts()
    return found


def test_hand_computed_method_of_moments_shrinkage() -> None:
    # HIGH band: a 32/40 at confidence .75, b 24/40 at .65, c 14/20 at .70.
    frame = outcomes([("a", 0.75, 40, 32), ("b", 0.65, 40, 24), ("c", 0.70, 20, 14)])
    # By hand: N = 100, μ = 70/100 = .7, μ(1-μ) = .21
    # S = 40(.8-.7)² + 40(.6-.7)² + 20(.7-.7)² = .4 + .4 + 0 = .8
    # Σn²/N = (1600 + 1600 + 400)/100 = 36; denominator = 100 - 36 - (3-1) = 62
    # ρ = (.8/.21 - 2)/62 = (80/21 - 42/21)/62 = 38/1302 = 19/651
    # M = 651/19 - 1 = 632/19 ≈ 33.263 (within [20, 100]: the moments fit stands)
    # α = .7 * 632/19 = 442.4/19, β = .3 * 632/19 = 189.6/19
    strength = 632 / 19
    alpha, beta = 0.7 * strength, 0.3 * strength
    (prior,) = service_band_priors(frame, *JAN).to_dicts()
    assert prior["band"] == "HIGH" and prior["services"] == 3 and prior["n"] == 100
    assert prior["accuracy"] == pytest.approx(0.7)
    assert prior["rho"] == pytest.approx(19 / 651)
    assert prior["prior_strength"] == pytest.approx(strength)
    assert (prior["alpha"], prior["beta"]) == (pytest.approx(alpha), pytest.approx(beta))
    assert prior["fit"] == "moments"
    result = calibrate_by_service(frame, *JAN)
    assert result.schema == pl.Schema(SERVICE_BANDS_SCHEMA)
    assert result["service"].to_list() == ["a", "b", "c"]
    # Posterior means (x + α)/(n + M), in nineteenths: a (608 + 442.4)/(760 + 632) = 1050.4/1392
    expected = {"a": (32, 40, 1050.4 / 1392, 0.75), "b": (24, 40, 898.4 / 1392, 0.65), "c": (14, 20, 708.4 / 1012, 0.70)}
    for service, (x, n, shrunk, confidence) in expected.items():
        got = row(result, service, "HIGH")
        assert got["n"] == n and got["accuracy"] == pytest.approx(x / n)
        assert got["shrunk_accuracy"] == pytest.approx(shrunk)
        low, high = beta_distribution(x + alpha, n - x + beta).interval(0.95)
        assert (got["shrunk_ci_low"], got["shrunk_ci_high"]) == (pytest.approx(low), pytest.approx(high))
        assert got["mean_confidence"] == pytest.approx(confidence)
        assert got["drift"] == pytest.approx(shrunk - confidence)
    # a: .7546 - .75 = +.0046 (INFO); b: .6454 - .65 = -.0046 (INFO); c: .7 - .7 = 0
    assert result["severity"].to_list() == ["INFO", "INFO", "INFO"]
    # Shrinkage pulls both ends toward .7 and keeps the order.
    assert 0.7 < row(result, "a", "HIGH")["shrunk_accuracy"] < 0.8
    assert 0.6 < row(result, "b", "HIGH")["shrunk_accuracy"] < 0.7


def test_the_floor_applies_when_services_spread_widely() -> None:
    # a 36/40, b 20/40, c 14/20: S = 40(.2)² + 40(.2)² = 3.2; ρ = (3.2/.21 - 2)/62 = .21352; M = 1/ρ - 1 = 3.68 < 20.
    frame = outcomes([("a", 0.7, 40, 36), ("b", 0.7, 40, 20), ("c", 0.7, 20, 14)])
    (prior,) = service_band_priors(frame, *JAN).to_dicts()
    assert prior["rho"] == pytest.approx((3.2 / 0.21 - 2) / 62)
    assert (prior["prior_strength"], prior["fit"]) == (20.0, "floor")
    assert row(calibrate_by_service(frame, *JAN), "a", "HIGH")["shrunk_accuracy"] == pytest.approx((36 + 14) / 60)
    # Without the floor the moments' own strength is used.
    (raw_prior,) = service_band_priors(frame, *JAN, min_prior_strength=0).to_dicts()
    assert raw_prior["prior_strength"] == pytest.approx(1 / prior["rho"] - 1)
    shrunk = row(calibrate_by_service(frame, *JAN, min_prior_strength=0), "a", "HIGH")["shrunk_accuracy"]
    assert shrunk == pytest.approx((36 + 0.7 * raw_prior["prior_strength"]) / (40 + raw_prior["prior_strength"]))


@pytest.mark.parametrize(
    "small, large, others",
    [
        # (small service's true positives of 3), (large: true positives of 3000), other services (n, tp)
        (0, 2700, []),
        (3, 1800, []),
        (1, 2400, [(200, 150), (500, 420), (80, 70)]),
        (3, 2100, [(40, 30), (60, 35), (300, 240), (1000, 700)]),
        (0, 2970, [(25, 20), (25, 24)]),
    ],
)
def test_small_service_lands_near_the_band_large_one_near_its_own(
    small: int, large: int, others: list[tuple[int, int]]
) -> None:
    groups = [("small", 0.7, 3, small), ("large", 0.7, 3000, large)]
    groups += [(f"s{i}", 0.7, n, tp) for i, (n, tp) in enumerate(others)]
    frame = outcomes(groups)
    result = calibrate_by_service(frame, *JAN)
    band_accuracy = (small + large + sum(tp for _, tp in others)) / (3003 + sum(n for n, _ in others))
    # The global band accuracy is calibrate()'s over every service.
    global_band = next(b for b in calibrate(frame, *JAN).bands.to_dicts() if b["band"] == "HIGH")
    assert global_band["accuracy"] == pytest.approx(band_accuracy)
    tiny = row(result, "small", "HIGH")
    raw = small / 3
    assert min(raw, band_accuracy) <= tiny["shrunk_accuracy"] <= max(raw, band_accuracy)
    assert abs(tiny["shrunk_accuracy"] - band_accuracy) < abs(tiny["shrunk_accuracy"] - raw)
    big = row(result, "large", "HIGH")
    assert abs(big["shrunk_accuracy"] - large / 3000) < 0.01
    assert abs(big["shrunk_accuracy"] - large / 3000) < abs(tiny["shrunk_accuracy"] - raw) / 10
    # The interval of the large service is about its own binomial one; the small one's is wider.
    own_low, own_high = wilson_interval(large, 3000)
    assert big["shrunk_ci_high"] - big["shrunk_ci_low"] < (own_high - own_low) * 1.01
    assert tiny["shrunk_ci_low"] < tiny["shrunk_accuracy"] < tiny["shrunk_ci_high"]


def test_prior_recovered_from_a_simulated_beta_binomial_population() -> None:
    # 400 services, true prior Beta(32, 8): strength 40, mean .8.
    rng = np.random.default_rng(11)
    sizes = rng.integers(10, 200, size=400)
    rates = rng.beta(32, 8, size=400)
    positives = rng.binomial(sizes, rates)
    frame = outcomes([(f"s{i:03d}", 0.9, int(n), int(x)) for i, (n, x) in enumerate(zip(sizes, positives, strict=True))])
    (prior,) = service_band_priors(frame, *JAN).to_dicts()
    assert prior["fit"] == "moments"
    assert prior["accuracy"] == pytest.approx(0.8, abs=0.01)
    assert 28 < prior["prior_strength"] < 56


def test_no_spread_beyond_noise_reads_as_the_pooled_band() -> None:
    frame = outcomes([("a", 0.5, 50, 25), ("b", 0.5, 50, 25), ("c", 0.5, 10, 5)])
    (prior,) = service_band_priors(frame, *JAN).to_dicts()
    assert (prior["fit"], prior["prior_strength"]) == ("pooled", 110.0)
    assert prior["rho"] < 0  # S = 0 < binomial noise
    result = calibrate_by_service(frame, *JAN)
    assert result["shrunk_accuracy"].to_list() == pytest.approx([0.5, 0.5, 0.5])
    c = row(result, "c", "MEDIUM")
    # Posterior Beta(5 + 55, 5 + 55): the pooled band's strength, so tighter than c's own 10 outcomes.
    assert (c["shrunk_ci_low"], c["shrunk_ci_high"]) == tuple(pytest.approx(v) for v in beta_distribution(60, 60).interval(0.95))


def test_one_service_keeps_its_own_accuracy() -> None:
    frame = outcomes([("only", 0.9, 50, 40), ("only", 0.1, 5, 1)])
    priors = service_band_priors(frame, *JAN)
    assert priors["fit"].to_list() == ["single service", "single service"]
    assert priors["prior_strength"].to_list() == [0.0, 0.0]
    result = calibrate_by_service(frame, *JAN)
    assert result["band"].to_list() == ["VERY_LOW", "VERY_HIGH"]
    high = row(result, "only", "VERY_HIGH")
    assert high["shrunk_accuracy"] == pytest.approx(0.8) == high["accuracy"]
    low, upper = beta_distribution(40, 10).interval(0.95)
    assert (high["shrunk_ci_low"], high["shrunk_ci_high"]) == (pytest.approx(low), pytest.approx(upper))
    # drift .8 - .9 = -.1: WARNING; VERY_LOW .2 - .1 = +.1: WARNING
    assert result["severity"].to_list() == ["WARNING", "WARNING"]


def test_a_band_of_one_label_gets_a_jeffreys_end_not_nan() -> None:
    # Every outcome in VERY_HIGH is a true positive, in both services: μ = 1, β = 0.
    frame = outcomes([("a", 0.95, 30, 30), ("b", 0.95, 3, 3), ("a", 0.1, 20, 0), ("b", 0.1, 1, 0)])
    result = calibrate_by_service(frame, *JAN)
    assert not any(math.isnan(v) for c in ("shrunk_accuracy", "shrunk_ci_low", "shrunk_ci_high") for v in result[c])
    b_high = row(result, "b", "VERY_HIGH")
    assert b_high["shrunk_accuracy"] == 1.0 and b_high["shrunk_ci_high"] == 1.0
    # Pooled: posterior Beta(3 + 33, 0) → Jeffreys Beta(36, ½) lower end.
    assert b_high["shrunk_ci_low"] == pytest.approx(beta_distribution.ppf(0.025, 36, 0.5))
    b_low = row(result, "b", "VERY_LOW")
    assert b_low["shrunk_accuracy"] == 0.0 and b_low["shrunk_ci_low"] == 0.0
    assert b_low["shrunk_ci_high"] == pytest.approx(beta_distribution.ppf(0.975, 0.5, 1 + 21))


def test_each_service_and_non_empty_band_once_and_severity_by_shrunk_drift() -> None:
    frame = outcomes(
        [("api", 0.9, 30, 12), ("api", 0.3, 30, 9), ("web", 0.9, 30, 27), ("web", 0.5, 4, 2), ("web", None, 7, 7)]
    )
    result = calibrate_by_service(frame, *JAN)
    assert list(zip(result["service"], result["band"], result["n"], strict=True)) == [
        ("api", "LOW", 30),
        ("api", "VERY_HIGH", 30),
        ("web", "MEDIUM", 4),
        ("web", "VERY_HIGH", 30),
    ]
    api = row(result, "api", "VERY_HIGH")
    # 12/30 at .9: overconfident; shrunk toward (12 + 27)/60 = .65 but still far below .9.
    assert api["drift"] < -0.15 and api["severity"] == "CRITICAL"
    assert api["drift"] == pytest.approx(api["shrunk_accuracy"] - 0.9)


def test_lazy_and_eager_and_extra_columns_agree() -> None:
    frame = opx.generate_outcomes("2026-01-01", "2026-02-01", per_day=60, seed=5)
    eager = calibrate_by_service(frame, *JAN)
    lazy = calibrate_by_service(frame.lazy().with_columns(extra=pl.lit("x")), *JAN)
    assert eager.equals(lazy)
    assert opx.calibrate_by_service(frame, *JAN).equals(eager)
    # Outside the window nothing counts.
    later = frame.with_columns(pl.col("recorded_at") + timedelta(days=40))
    assert calibrate_by_service(pl.concat([frame, later]), *JAN).equals(eager)


def test_bad_input_is_named() -> None:
    frame = outcomes([("a", 0.7, 30, 20)])
    with pytest.raises(ValueError, match="missing column.*service"):
        calibrate_by_service(frame.drop("service"), *JAN)
    camel = frame.rename({"predicted_confidence": "predictedConfidence", "true_positive": "truePositive"})
    with pytest.raises(ValueError, match="missing column.*predicted_confidence"):
        calibrate_by_service(camel, *JAN)
    with pytest.raises(ValueError, match="predicted_confidence is String"):
        calibrate_by_service(frame.with_columns(pl.col("predicted_confidence").cast(pl.String)), *JAN)
    with pytest.raises(ValueError, match=r"predicted_confidence has 1 value\(s\) that are NaN"):
        calibrate_by_service(frame.with_columns(pl.when(pl.col("outcome_id") == "o-0").then(float("nan"))
                                                .otherwise(pl.col("predicted_confidence")).alias("predicted_confidence")), *JAN)
    with pytest.raises(TypeError, match="outcomes: expected a polars DataFrame"):
        calibrate_by_service(frame.to_dicts(), *JAN)  # type: ignore[arg-type]
    with pytest.raises(WindowError):
        calibrate_by_service(frame, "2026-02-01", "2026-01-01")
    with pytest.raises(ValueError, match="min_prior_strength: -1"):
        calibrate_by_service(frame, *JAN, min_prior_strength=-1)
    with pytest.raises(InsufficientData, match=r"no outcome with a predicted_confidence in \[2026-03-01T00:00:00.000Z, 2026-04-01T00:00:00.000Z\)"):
        calibrate_by_service(frame, "2026-03-01", "2026-04-01")
    with pytest.raises(InsufficientData, match=r"5 skipped without one"):
        calibrate_by_service(outcomes([("a", None, 5, 5)]), *JAN)
