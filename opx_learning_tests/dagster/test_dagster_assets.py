"""Each asset materializes for one partition and for a range on a real instance; results match the core."""

from __future__ import annotations

import io
from datetime import date

import dagster as dg
import polars as pl
from polars.testing import assert_frame_equal

from opx_learning.app import launch
from opx_learning.core.calibration import Calibration
from opx_learning.core.patterns import extract_patterns
from opx_learning.core.windows import Window
from opx_learning.defs.location import CUSTOM_WINDOWS
from opx_learning.defs.partitions import custom_key
from opx_learning.safety.models import AuditRecord, AuthorityType, Principal
from opx_learning.stores.outcomes import outcome_store
from opx_learning_tests import wiring
from opx_learning_tests.wiring import resource, settings

DAYS = [f"2025-10-{day:02d}" for day in range(1, 8)]


def _outcomes(start: str, end: str) -> pl.DataFrame:
    return outcome_store(wiring.settings()).read(Window.parse(start, end))


def _audit(audit_id: str) -> AuditRecord | None:
    return resource("safety").guard().audit.get(audit_id)


def test_dagster_daily_range_is_one_run_and_matches_core(instance: dg.DagsterInstance, seeded: pl.DataFrame) -> None:
    run = launch.materialize(settings(), instance, ["daily_outcomes", "pattern_summaries_daily"], DAYS)
    assert run.success, run.failures
    assert run.materialized == {"daily_outcomes": DAYS, "pattern_summaries_daily": DAYS}
    assert len(instance.get_run_records()) == 1
    storage = resource("asset_storage")
    # The emerging-root-cause baseline reaches back up to 8 windows.
    for previous, day in (("2025-09-23", "2025-10-01"), ("2025-09-26", "2025-10-04")):
        end = f"{day}T23:59:59.999Z"
        assert storage.read("daily_outcomes", day).height == _outcomes(day, end).height
        expected = extract_patterns(_outcomes(previous, end), day, end)
        assert_frame_equal(storage.read("pattern_summaries_daily", day), expected)
    (audit_id,) = run.audit_ids
    record = _audit(audit_id)
    assert (record.operation_type.value, record.status.value, record.trigger_type.value) == (
        "PATTERN_EXTRACTION",
        "SUCCESS",
        "BACKFILL",
    )
    assert record.run_id == run.run_id
    assert record.results["partition_keys"] == DAYS  # one record accounts for every partition of the range


def test_dagster_single_partition_without_upstream(instance: dg.DagsterInstance, seeded: pl.DataFrame) -> None:
    run = launch.materialize(settings(), instance, ["pattern_summaries_daily"], ["2025-11-12"])
    assert run.success, run.failures
    metadata = run.metadata["pattern_summaries_daily"]["2025-11-12"]
    day = _outcomes("2025-11-12", "2025-11-13")
    assert metadata["total_incidents"] == day.height
    assert metadata["services"] == day["service"].n_unique()
    assert "| root cause | count | share |" in metadata["top_root_causes"]
    assert metadata["duration_ms"] >= 0


def test_dagster_weekly_summary_equals_its_seven_days(instance: dg.DagsterInstance, seeded: pl.DataFrame) -> None:
    week, days = "2025-10-05", [f"2025-10-{day:02d}" for day in range(5, 12)]
    assert launch.materialize(settings(), instance, ["pattern_summaries_weekly"], [week, "2025-10-12"]).success
    assert launch.materialize(settings(), instance, ["pattern_summaries_daily"], days).success
    storage = resource("asset_storage")
    weekly = storage.read("pattern_summaries_weekly", week)
    # The emerging-root-cause baseline reaches back up to 8 weeks.
    assert_frame_equal(weekly, extract_patterns(_outcomes("2025-08-10", "2025-10-12"), "2025-10-05", "2025-10-12"))
    daily = pl.concat([storage.read("pattern_summaries_daily", day) for day in days])
    summed = daily.group_by("service").agg(pl.col("total_incidents", "true_positives", "false_positives").sum())
    assert_frame_equal(
        weekly.select("service", "total_incidents", "true_positives", "false_positives").sort("service"),
        summed.sort("service"),
    )


def test_dagster_calibration_and_drift_per_month(instance: dg.DagsterInstance, seeded: pl.DataFrame) -> None:
    for month in ("2025-09-01", "2025-10-01"):
        run = launch.materialize(settings(), instance, ["confidence_calibration", "drift_metrics"], [month])
        assert run.success, run.failures
    storage = resource("asset_storage")
    september = Calibration.from_dict(storage.read("confidence_calibration", "2025-09-01"))
    october = Calibration.from_dict(storage.read("confidence_calibration", "2025-10-01"))
    assert october.drift_detected and not september.drift_detected
    drift_october = storage.read("drift_metrics", "2025-10-01").row(0, named=True)
    assert drift_october["change_max_abs_drift"] == october.max_abs_drift - september.max_abs_drift
    drift_september = storage.read("drift_metrics", "2025-09-01").row(0, named=True)
    assert drift_september["change_max_abs_drift"] is None  # no August calibration: null, not a failure
    assert run.metadata["confidence_calibration"]["2025-10-01"]["drift_detected"] is True


def test_dagster_calibration_insufficient_data_fails_and_is_audited(
    instance: dg.DagsterInstance, seeded: pl.DataFrame
) -> None:
    run = launch.materialize(settings(), instance, ["confidence_calibration", "drift_metrics"], ["2025-08-01"])
    assert not run.success
    assert "INSUFFICIENT_DATA" in " ".join(run.failures)
    assert run.materialized == {}
    (record,) = [r for r in resource("safety").guard().audit.recent(5) if r.operation_type.value == "CALIBRATION"]
    assert record.status.value == "FAILED"
    assert record.results["failure_reason"] == "INSUFFICIENT_DATA"


def test_dagster_rejected_rows_are_kept(instance: dg.DagsterInstance, seeded: pl.DataFrame) -> None:
    store = outcome_store(wiring.settings())
    day_file = store.day_file(date(2025, 10, 2))
    frame = pl.read_parquet(day_file)
    broken = frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 0).then(True).otherwise(pl.col("false_positive")).alias("false_positive"),
        pl.when(pl.int_range(pl.len()) == 0).then(True).otherwise(pl.col("true_positive")).alias("true_positive"),
    )
    # Stored through the store's manifest, as a bad row the platform once accepted would be.
    buffer = io.BytesIO()
    broken.write_parquet(buffer)
    store.ledger.write(day_file, buffer.getvalue())
    run = launch.materialize(settings(), instance, ["daily_outcomes"], ["2025-10-02"])
    assert run.success
    metadata = run.metadata["daily_outcomes"]["2025-10-02"]
    assert (metadata["outcomes"], metadata["rejected"]) == (frame.height - 1, 1)
    rejected = resource("asset_storage").read("rejected_outcomes", "2025-10-02")
    assert rejected.height == 1 and "reason" in rejected.columns


def test_dagster_snapshots_hold_latest_known_calibration(instance: dg.DagsterInstance, seeded: pl.DataFrame) -> None:
    october = [f"2025-10-{day:02d}" for day in range(1, 32)]
    assert launch.materialize(settings(), instance, ["pattern_summaries_daily"], october).success
    for month in ("2025-09-01", "2025-10-01"):
        assert launch.materialize(settings(), instance, ["confidence_calibration"], [month]).success
    daily = launch.materialize(settings(), instance, ["learning_snapshots_daily"], ["2025-10-15", "2025-10-16"])
    monthly = launch.materialize(settings(), instance, ["learning_snapshots_monthly"], ["2025-10-01"])
    assert daily.success and monthly.success, daily.failures + monthly.failures
    storage = resource("asset_storage")
    calibrations = {
        month: storage.read("confidence_calibration", month)["calibration_id"] for month in ("2025-09-01", "2025-10-01")
    }
    day = storage.read("learning_snapshots_daily", "2025-10-15")
    assert day["calibration"]["calibration_id"] == calibrations["2025-09-01"]
    assert day["counts"]["outcomes"] == _outcomes("2025-10-15", "2025-10-16").height
    month = storage.read("learning_snapshots_monthly", "2025-10-01")
    assert month["calibration"]["calibration_id"] == calibrations["2025-10-01"]
    assert month["counts"]["summaries"] == sum(storage.read("pattern_summaries_daily", d).height for d in october)
    again = launch.materialize(settings(), instance, ["learning_snapshots_daily"], ["2025-10-15"])
    assert again.metadata["learning_snapshots_daily"]["2025-10-15"]["snapshot_id"] == day["snapshot_id"]
    assert again.metadata["learning_snapshots_daily"]["2025-10-15"]["version"] == 1


def test_dagster_empty_window_snapshot_warns(instance: dg.DagsterInstance, seeded: pl.DataFrame) -> None:
    assert launch.materialize(settings(), instance, ["pattern_summaries_daily"], ["2025-08-15"]).success
    run = launch.materialize(settings(), instance, ["learning_snapshots_daily"], ["2025-08-15"])
    assert run.success
    assert run.metadata["learning_snapshots_daily"]["2025-08-15"]["empty"] is True
    assert run.checks == []  # learning runs evaluate no check: the checklist job does


def test_dagster_custom_snapshot_window(instance: dg.DagsterInstance, seeded: pl.DataFrame) -> None:
    key = custom_key(Window.parse("2025-10-03", "2025-10-20T12:00:00Z"))
    assert key == "2025-10-03..2025-10-20T12:00:00.000Z"
    instance.add_dynamic_partitions(CUSTOM_WINDOWS, [key])
    run = launch.materialize(settings(), instance, ["learning_snapshot_custom"], [key])
    assert run.success, run.failures
    snapshot = resource("asset_storage").read("learning_snapshot_custom", key)
    assert snapshot["snapshot_type"] == "CUSTOM"
    assert snapshot["counts"]["outcomes"] == _outcomes("2025-10-03", "2025-10-20T12:00:00Z").height


def test_dagster_kill_switch_skips_without_failing(instance: dg.DagsterInstance, seeded: pl.DataFrame) -> None:
    guard = resource("safety").guard()
    guard.kill_switch.disable(Principal("ops-admin", AuthorityType.EMERGENCY_OVERRIDE), "maintenance")
    run = launch.materialize(settings(), instance, ["daily_outcomes", "pattern_summaries_daily"], ["2025-10-01"])
    assert run.success
    assert run.materialized == {"daily_outcomes": ["2025-10-01"]}
    assert run.skipped == {"pattern_summaries_daily": "KILL_SWITCH_ACTIVE"}
    record = guard.audit.get(run.audit_ids[0])
    assert (record.status.value, record.skip_reason) == ("SKIPPED", "KILL_SWITCH_ACTIVE")


def test_dagster_calibration_audit_names_the_most_drifted_month_and_band(
    instance: dg.DagsterInstance, seeded: pl.DataFrame
) -> None:
    run = launch.materialize(settings(), instance, ["confidence_calibration"], ["2025-09-01", "2025-10-01"])
    assert run.success, run.failures
    (record,) = [r for r in resource("safety").guard().audit.recent(5) if r.operation_type.value == "CALIBRATION"]
    storage = resource("asset_storage")
    months = [Calibration.from_dict(storage.read("confidence_calibration", m)) for m in ("2025-09-01", "2025-10-01")]
    october = months[1]
    # The overconfident October drifts more than September: its numbers are the run's headline.
    assert record.results["max_abs_drift"] == october.max_abs_drift > months[0].max_abs_drift
    assert record.results["skipped_count"] == sum(m.skipped_count for m in months)
    sufficient = [b for b in october.bands.to_dicts() if b["sufficient"]]
    worst = max(sufficient, key=lambda b: abs(b["drift"]))
    assert record.results["drift_band"] == worst["band"]
    assert [w["window_start"][:10] for w in record.results["windows"]] == ["2025-09-01", "2025-10-01"]
