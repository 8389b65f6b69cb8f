"""Where confidence is wrong: accuracy vs confidence per (service, normalised root cause), known answers by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

import opx_learning as opx
from opx_learning.core.calibration import InsufficientData
from opx_learning.core.schema import OUTCOME_SCHEMA
from opx_learning.core.service_calibration import (
    ROOT_CAUSE_SCHEMA,
    confidence_by_root_cause,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
JAN = ("2026-01-01", "2026-02-01")


def outcomes(groups: list[tuple[str, str | None, float | None, int, int]]) -> pl.DataFrame:
    """Outcomes from (service, root cause, confidence, n, true positives) groups."""
    rows = []
    for service, cause, confidence, n, positives in groups:
        rows += [(service, cause, confidence, i < positives) for i in range(n)]
    count = len(rows)
    recorded = [T0 + timedelta(minutes=i) for i in range(count)]
    return pl.DataFrame(
        {
            "outcome_id": [f"o-{i}" for i in range(count)],
            "incident_id": [f"i-{i}" for i in range(count)],
            "service": [r[0] for r in rows],
            "recorded_at": recorded,
            "validated_at": recorded,
            "true_positive": [r[3] for r in rows],
            "false_positive": [not r[3] for r in rows],
            "root_cause": [r[1] for r in rows],
            "resolution_type": ["FIXED"] * count,
            "ttd_ms": [1.0] * count,
            "ttr_ms": [2.0] * count,
            "predicted_confidence": [r[2] for r in rows],
            "human_confidence_rating": [None] * count,
        },
        schema=OUTCOME_SCHEMA,
    )


def test_overconfident_root_cause_known_answer() -> None:
    frame = outcomes(
        [
            # api / disk full: three spellings of one cause, 30 outcomes at .9, 12 true positives.
            ("api", "disk full", 0.9, 16, 6),
            ("api", "Disk  Full", 0.9, 10, 4),
            ("api", " DISK FULL ", 0.9, 4, 2),
            # api / oom: 25 at .5, 13 true positives: within its interval.
            ("api", "oom", 0.5, 25, 13),
            # api / dns: 19 outcomes, one too few to be listed.
            ("api", "dns", 0.1, 19, 19),
            # web / disk full: 40 at .2, 20 true positives: underconfident.
            ("web", "disk full", 0.2, 40, 20),
            # web: null root cause and unscored outcomes are not listed.
            ("web", None, 0.5, 30, 0),
            ("web", "oom", None, 30, 0),
        ]
    )
    result = confidence_by_root_cause(frame, *JAN)
    assert result.schema == pl.Schema(ROOT_CAUSE_SCHEMA)
    listed = list(zip(result["service"], result["root_cause"], result["n"], strict=True))
    # Significant first by |drift|: web/disk full +.30, api/disk full -.50 → api first; then api/oom.
    assert listed == [("api", "disk full", 30), ("web", "disk full", 40), ("api", "oom", 25)]
    api = result.row(0, named=True)
    assert api["root_cause_key"] == "disk full" and api["true_positives"] == 12
    assert api["accuracy"] == pytest.approx(0.4) and api["mean_confidence"] == pytest.approx(0.9)
    assert api["drift"] == pytest.approx(-0.5)
    # Wilson 12/30 by hand: z² = 3.8415; centre = (.4 + .064025)/1.128049 = .411352;
    # half = 1.95996/1.128049 * sqrt(.24/30 + 3.8415/3600) = 1.737479 * .0952213 = .165445
    assert api["ci_low"] == pytest.approx(0.245907, abs=1e-5) and api["ci_high"] == pytest.approx(0.576797, abs=1e-5)
    assert (api["significant"], api["direction"], api["severity"]) == (True, "overconfident", "CRITICAL")
    assert api["finding"] == "overconfident on root cause disk full in service api (accuracy 0.40 vs confidence 0.90)"
    web = result.row(1, named=True)
    # 20/40 = .5 vs .2: Wilson [.352, .648] excludes .2.
    assert (web["significant"], web["direction"], web["drift"]) == (True, "underconfident", pytest.approx(0.3))
    oom = result.row(2, named=True)
    # 13/25 = .52 vs .5: Wilson [.335, .700] holds .5; |drift| .02 → INFO.
    assert (oom["significant"], oom["direction"], oom["severity"]) == (False, "within interval", "INFO")
    assert oom["finding"].startswith("no significant gap on root cause oom in service api")


def test_one_label_per_cause_and_min_outcomes_respected() -> None:
    frame = outcomes([("api", "Disk Full", 0.9, 12, 6), ("api", "disk full", 0.9, 8, 4), ("api", "dns", 0.1, 19, 19)])
    result = confidence_by_root_cause(frame, *JAN)
    assert result["root_cause"].to_list() == ["disk full"]
    assert result["n"].to_list() == [20]
    # dns is 19 of 19 true positives: decided by the cause, listed last and never a finding.
    low = confidence_by_root_cause(frame, *JAN, min_outcomes=19)
    assert low["root_cause"].to_list() == ["disk full", "dns"]
    assert low["decided_by_cause"].to_list() == [False, True] and low["significant"].to_list()[1] is False
    assert confidence_by_root_cause(frame, *JAN, min_outcomes=21).is_empty()


def test_analyst_api_and_lazy_frames() -> None:
    frame = opx.generate_outcomes("2026-01-01", "2026-02-01", per_day=80, seed=2)
    eager = opx.confidence_by_root_cause(frame, *JAN)
    assert eager.equals(confidence_by_root_cause(frame.lazy(), *JAN))
    assert eager.height > 0 and (eager["n"] >= 20).all()
    significant = eager["significant"].to_list()
    assert significant == sorted(significant, reverse=True)
    flagged = eager.filter(pl.col("significant"))["drift"].abs().to_list()
    assert flagged == sorted(flagged, reverse=True)


def test_bad_input_is_named() -> None:
    frame = outcomes([("api", "disk full", 0.9, 30, 12)])
    with pytest.raises(ValueError, match="missing column.*root_cause"):
        confidence_by_root_cause(frame.rename({"root_cause": "rootCause"}), *JAN)
    with pytest.raises(ValueError, match="min_outcomes: 0"):
        confidence_by_root_cause(frame, *JAN, min_outcomes=0)
    with pytest.raises(InsufficientData, match="no outcome with a predicted_confidence in"):
        confidence_by_root_cause(frame, "2025-01-01", "2025-02-01")


def test_p_values_and_benjamini_hochberg_by_hand() -> None:
    from math import comb

    frame = outcomes([("api", "disk full", 0.9, 30, 12), ("web", "disk full", 0.2, 40, 20), ("api", "oom", 0.5, 25, 13)])
    result = confidence_by_root_cause(frame, *JAN).sort("service", "root_cause")
    # Two-sided exact binomial, summed by hand: p = min(1, 2 * min(P(X <= tp), P(X >= tp))), X ~ Bin(n, mean c).
    def tail(n: int, p: float, ks: range) -> float:
        return sum(comb(n, k) * p**k * (1 - p) ** (n - k) for k in ks)

    def two_sided(tp: int, n: int, p: float) -> float:
        return min(1.0, 2 * min(tail(n, p, range(tp + 1)), tail(n, p, range(tp, n + 1))))

    by_hand = {
        ("api", "disk full"): two_sided(12, 30, 0.9),
        ("api", "oom"): two_sided(13, 25, 0.5),
        ("web", "disk full"): two_sided(20, 40, 0.2),
    }
    got = {(r["service"], r["root_cause"]): r for r in result.iter_rows(named=True)}
    for key, p in by_hand.items():
        assert got[key]["p_value"] == pytest.approx(p, rel=1e-9)
    # BH over three: sorted p1 <= p2 <= p3 -> q_i = min over j >= i of p_j * 3 / j.
    ordered = sorted(by_hand.values())
    q = [min(ordered[j] * 3 / (j + 1) for j in range(i, 3)) for i in range(3)]
    assert sorted(r["q_value"] for r in got.values()) == pytest.approx(q)
    assert [got[k]["significant"] for k in by_hand] == [True, False, True]


def test_a_cause_decided_by_itself_is_not_a_monthly_finding() -> None:
    # "monitoring noise" is a false positive by definition: 0 of 60 true, at any confidence.
    frame = outcomes([("api", "monitoring noise", 0.7, 30, 0), ("web", "monitoring noise", 0.6, 30, 1),
                      ("api", "disk full", 0.5, 40, 20)])
    result = confidence_by_root_cause(frame, *JAN)
    noise = result.filter(pl.col("root_cause") == "monitoring noise")
    assert noise["decided_by_cause"].to_list() == [True, True]
    assert not noise["significant"].any() and noise["q_value"].null_count() == 2
    assert noise["finding"][0].startswith("root cause monitoring noise is 100% false positives")
    assert result["root_cause"].to_list()[-2:] == ["monitoring noise", "monitoring noise"]


def test_calibrated_confidence_gives_at_most_one_finding_a_month() -> None:
    import numpy as np

    rng = np.random.default_rng(5)
    monthly = []
    for month in range(1, 13):
        start = f"2026-{month:02d}-01"
        end = "2027-01-01" if month == 12 else f"2026-{month + 1:02d}-01"
        frame = opx.generate_outcomes(start, end, per_day=60, seed=month)
        # Confidence calibrated for every cause: each outcome is true with exactly its predicted probability.
        confidence = frame["predicted_confidence"].fill_null(0.5).to_numpy()
        truth = rng.random(len(confidence)) < confidence
        frame = frame.with_columns(true_positive=pl.Series(truth), false_positive=pl.Series(~truth))
        monthly.append(int(confidence_by_root_cause(frame, start, end)["significant"].sum()))
    assert max(monthly) <= 1, monthly
