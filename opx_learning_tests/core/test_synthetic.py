"""generate_outcomes: seeded, valid, and its controllable properties hold."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest

from opx_learning.core.schema import OUTCOME_SCHEMA
from opx_learning.core.synthetic import (
    DEFAULT_SERVICES,
    EMERGING_ROOT_CAUSE,
    generate_outcomes,
    generation_window,
)
from opx_learning.core.validation import validate_outcomes


@pytest.fixture(scope="module")
def quarter() -> pl.DataFrame:
    return generate_outcomes("2026-01-01", "2026-04-01", per_day=400, seed=11, overconfident_months=("2026-02",))


def normalized(column: str = "root_cause") -> pl.Expr:
    return pl.col(column).str.strip_chars().str.replace_all(r"\s+", " ").str.to_lowercase()


def test_same_seed_same_frame_other_seed_differs() -> None:
    first = generate_outcomes("2026-01-01", days=5, per_day=100, seed=3)
    assert first.equals(generate_outcomes("2026-01-01", days=5, per_day=100, seed=3))
    assert not first.equals(generate_outcomes("2026-01-01", days=5, per_day=100, seed=4))


def test_schema_validity_and_range(quarter: pl.DataFrame) -> None:
    assert quarter.schema == pl.Schema(OUTCOME_SCHEMA)
    result = validate_outcomes(quarter)
    assert result.rejected.height == 0
    assert quarter["recorded_at"].min() >= datetime(2026, 1, 1, tzinfo=UTC)
    assert quarter["recorded_at"].max() < datetime(2026, 4, 1, tzinfo=UTC)
    assert 90 * 400 * 0.9 < quarter.height < 90 * 400 * 1.1
    assert sorted(quarter["service"].unique().to_list()) == sorted(DEFAULT_SERVICES)
    assert quarter["recorded_at"].dt.date().n_unique() == 90


def test_exact_row_count_and_partial_days() -> None:
    frame = generate_outcomes("2026-01-01T12:00:00Z", "2026-01-03T06:00:00Z", n=5000, seed=1)
    assert frame.height == 5000
    assert frame["recorded_at"].min() >= datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert frame["recorded_at"].max() < datetime(2026, 1, 3, 6, tzinfo=UTC)
    assert frame["outcome_id"].n_unique() == 5000


def test_diurnal_peak_in_the_afternoon(quarter: pl.DataFrame) -> None:
    by_hour = quarter.group_by(pl.col("recorded_at").dt.hour().alias("h")).len()
    counts = dict(by_hour.iter_rows())
    assert counts[14] > 3 * counts[2]


def test_noisy_service_has_high_false_positive_rate(quarter: pl.DataFrame) -> None:
    calm = quarter.filter(pl.col("recorded_at").dt.month() != 2)
    rates = dict(calm.group_by("service").agg(pl.col("false_positive").mean()).iter_rows())
    assert rates["notification-service"] == pytest.approx(0.45, abs=0.04)
    assert max(rate for name, rate in rates.items() if name != "notification-service") < 0.2


def test_false_positives_resolve_mostly_as_false_alarm(quarter: pl.DataFrame) -> None:
    fp = quarter.filter("false_positive")["resolution_type"].cast(pl.String)
    tp = quarter.filter("true_positive")["resolution_type"].cast(pl.String)
    assert (fp == "FALSE_ALARM").mean() > 0.8
    assert (tp == "FALSE_ALARM").sum() == 0


def test_emerging_cause_appears_only_from_its_start() -> None:
    frame = generate_outcomes("2026-01-01", days=20, per_day=300, seed=5, emerging_from="2026-01-11")
    emerging = frame.filter(normalized() == EMERGING_ROOT_CAUSE)
    assert emerging["recorded_at"].min() >= datetime(2026, 1, 11, tzinfo=UTC)
    assert emerging.height > 0.1 * frame.filter(pl.col("recorded_at") >= datetime(2026, 1, 11, tzinfo=UTC)).height
    default = generate_outcomes("2026-01-01", days=20, per_day=100, seed=5)
    first = default.filter(normalized() == EMERGING_ROOT_CAUSE)["recorded_at"].min()
    assert first >= datetime(2026, 1, 11, tzinfo=UTC)
    disabled = generate_outcomes("2026-01-01", days=20, per_day=100, seed=5, emerging_root_cause=None)
    assert disabled.filter(normalized() == EMERGING_ROOT_CAUSE).height == 0


def test_root_causes_have_messy_spellings(quarter: pl.DataFrame) -> None:
    spellings = quarter.filter(normalized() == "memory leak")["root_cause"].unique().to_list()
    assert {"memory leak", "MEMORY LEAK", "Memory Leak", "  memory  leak "} <= set(spellings)


def test_overconfident_month_accuracy_below_confidence(quarter: pl.DataFrame) -> None:
    monthly = (
        quarter.drop_nulls("predicted_confidence")
        .group_by(pl.col("recorded_at").dt.month().alias("month"))
        .agg(pl.col("true_positive").mean().alias("accuracy"), pl.col("predicted_confidence").mean().alias("conf"))
        .sort("month")
    )
    gaps = {month: accuracy - conf for month, accuracy, conf in monthly.iter_rows()}
    assert gaps[2] == pytest.approx(-0.2, abs=0.03)
    assert abs(gaps[1]) < 0.02
    assert abs(gaps[3]) < 0.02


def test_gradual_drift_grows_over_the_range() -> None:
    frame = generate_outcomes("2026-01-01", days=60, per_day=400, seed=2, drift=0.3).drop_nulls("predicted_confidence")
    early = frame.filter(pl.col("recorded_at") < datetime(2026, 1, 11, tzinfo=UTC))
    late = frame.filter(pl.col("recorded_at") >= datetime(2026, 2, 20, tzinfo=UTC))

    def gap(part: pl.DataFrame) -> float:
        return part["true_positive"].mean() - part["predicted_confidence"].mean()

    assert abs(gap(early)) < 0.05
    assert gap(late) < -0.2


def test_nulls_and_ratings(quarter: pl.DataFrame) -> None:
    assert quarter["predicted_confidence"].null_count() / quarter.height == pytest.approx(0.02, abs=0.005)
    rated = quarter.drop_nulls("human_confidence_rating")
    assert rated.filter("true_positive")["human_confidence_rating"].mean() > rated.filter("false_positive")[
        "human_confidence_rating"
    ].mean() + 0.3


def test_services_argument_and_errors() -> None:
    assert generate_outcomes("2026-01-01", days=2, services=3, seed=0)["service"].n_unique() == 3
    named = generate_outcomes("2026-01-01", days=2, services=["a", "b"], noisy_service="b", seed=0)
    assert set(named["service"].unique()) == {"a", "b"}
    with pytest.raises(ValueError, match="noisy_service: 'zzz'"):
        generate_outcomes("2026-01-01", days=2, services=["a"], noisy_service="zzz")
    with pytest.raises(ValueError, match="days: 0"):
        generate_outcomes("2026-01-01", days=0)
    with pytest.raises(ValueError, match="overconfident_months: '2026-13'"):
        generate_outcomes("2026-01-01", days=2, overconfident_months=("2026-13",))
    with pytest.raises(ValueError, match="start: 'soon'"):
        generate_outcomes("soon", days=2)


def test_default_window_is_90_days_ending_today() -> None:
    window = generation_window()
    today = datetime.now(UTC).date()
    assert window.end == datetime(today.year, today.month, today.day, tzinfo=UTC)
    assert len(window.days()) == 90
    assert generation_window("2026-01-01", "2026-01-31T23:59:59.999Z").end == datetime(2026, 2, 1, tzinfo=UTC)
