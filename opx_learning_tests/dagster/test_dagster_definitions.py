"""The code location loads and exposes the asset graph, checks and schedules described in docs/assets.md."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from opx_learning_tests.wiring import location, settings

ROOT = Path(__file__).resolve().parents[2]
DAGSTER = Path(sys.executable).with_name("dagster")

EXPECTED_PARTITIONS = {
    "daily_outcomes": dg.DailyPartitionsDefinition,
    "pattern_summaries_daily": dg.DailyPartitionsDefinition,
    "pattern_summaries_weekly": dg.WeeklyPartitionsDefinition,
    "confidence_calibration": dg.MonthlyPartitionsDefinition,
    "drift_metrics": dg.MonthlyPartitionsDefinition,
    "learning_snapshots_daily": dg.DailyPartitionsDefinition,
    "learning_snapshots_weekly": dg.WeeklyPartitionsDefinition,
    "learning_snapshots_monthly": dg.MonthlyPartitionsDefinition,
    "learning_snapshot_custom": dg.DynamicPartitionsDefinition,
    "pattern_summaries_custom": dg.DynamicPartitionsDefinition,
    "confidence_calibration_custom": dg.DynamicPartitionsDefinition,
    "confidence_calibration_by_service": dg.MonthlyPartitionsDefinition,
}
EXPECTED_CHECKS = {
    "audit_trail_daily": {
        "operations_succeeded_last_24h", "error_rate_under_10_percent_last_24h", "no_failure_or_timeout_alerts",
    },
    "audit_trail_weekly": {
        "weekly_success_rate_over_90_percent", "weekly_duration_trend_stable", "weekly_error_rate_under_10_percent",
    },
    "pattern_summaries_daily": {"scheduled_daily_pattern_extraction", "window_has_outcomes"},
    "pattern_summaries_weekly": {
        "scheduled_weekly_pattern_extraction", "weekly_patterns_cover_every_service", "window_has_outcomes",
    },
    "pattern_summaries_custom": {"window_has_outcomes"},
    "confidence_calibration": {
        "scheduled_monthly_calibration",
        "calibration_has_at_least_30_outcomes",
        "calibration_drift_within_0_15",
        "monthly_drift_alerts",
    },
    "learning_snapshots_daily": {"scheduled_daily_snapshot"},
    "learning_snapshots_weekly": {"scheduled_weekly_snapshot"},
    "learning_snapshots_monthly": {"scheduled_monthly_snapshot"},
    "stored_data": {"stored_data_integrity"},
    "sensor_heartbeats": {"monitors_ticking"},
}
EXPECTED_SCHEDULES = {
    "daily_patterns_schedule": "0 0 * * *",
    "weekly_patterns_schedule": "0 0 * * 0",
    "monthly_calibration_schedule": "0 0 1 * *",
    "daily_snapshot_schedule": "0 1 * * *",
    "weekly_snapshot_schedule": "0 1 * * 0",
    "monthly_snapshot_schedule": "0 1 1 * *",
    "morning_checklist_schedule": "0 9 * * *",
    "outcome_days_observation_schedule": "*/10 * * * *",
}


def test_dagster_definitions_validate_from_repo_root(tmp_path: Path) -> None:
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "OPX_HOME": str(tmp_path / "opx")}
    result = subprocess.run(
        [str(DAGSTER), "definitions", "validate"], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All code locations passed validation" in result.stdout + result.stderr


def test_assets_partitions_and_freshness() -> None:
    graph = location().resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    # Never materialized: the integrity sweep's and the watchdog's targets, and the audit trail the checklist reviews.
    # outcome_days: the observed outcome store (a source asset, one data version per day).
    assert keys == set(EXPECTED_PARTITIONS) | {
        "stored_data", "audit_trail_daily", "audit_trail_weekly", "sensor_heartbeats", "outcome_days",
    }
    for name, kind in EXPECTED_PARTITIONS.items():
        node = graph.get(dg.AssetKey(name))
        assert isinstance(node.partitions_def, kind), name
        if kind is not dg.DynamicPartitionsDefinition:
            assert node.partitions_def.start.strftime("%Y-%m-%d") == settings().partitions_start.isoformat()
            assert node.freshness_policy is not None, name
    weekly = graph.get(dg.AssetKey("pattern_summaries_weekly")).partitions_def
    assert weekly.get_first_partition_key() == "2025-01-05"  # the first Sunday


@pytest.mark.parametrize("name", ["pattern_summaries_daily", "pattern_summaries_weekly", "learning_snapshots_daily"])
def test_range_assets_backfill_in_one_run(name: str) -> None:
    node = location().resolve_asset_graph().get(dg.AssetKey(name))
    assert node.backfill_policy == dg.BackfillPolicy.single_run()


def test_checks_read_like_the_morning_checklist() -> None:
    found: dict[str, set[str]] = {}
    for check_key in location().resolve_asset_graph().asset_check_keys:
        found.setdefault(check_key.asset_key.to_user_string(), set()).add(check_key.name)
    assert found == EXPECTED_CHECKS


def test_schedules_exist_for_every_cadence_and_start_stopped() -> None:
    schedules = {schedule.name: schedule for schedule in location().schedules}
    assert {name: schedule.cron_schedule for name, schedule in schedules.items()} == EXPECTED_SCHEDULES
    for schedule in schedules.values():
        assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
        assert schedule.execution_timezone == "UTC"


def test_housekeeping_and_alert_sensors_are_registered_running() -> None:
    sensors = {sensor.name: sensor for sensor in location().sensors or []}
    assert {"audit_run_terminated_sensor", "operations_alert_sensor", "monitors_watchdog_sensor"} <= set(sensors)
    for name in ("audit_run_terminated_sensor", "operations_alert_sensor", "monitors_watchdog_sensor"):
        assert sensors[name].default_status == dg.DefaultSensorStatus.RUNNING
    assert "alerts" in location().resources


def test_late_outcomes_automation_sensor_starts_stopped() -> None:
    sensors = {sensor.name: sensor for sensor in location().sensors or []}
    automation = sensors["late_outcomes_automation"]
    assert isinstance(automation, dg.AutomationConditionSensorDefinition)
    assert automation.default_status == dg.DefaultSensorStatus.STOPPED
    graph = location().resolve_asset_graph()
    outcome_days = graph.get(dg.AssetKey("outcome_days"))
    assert outcome_days.is_observable and isinstance(outcome_days.partitions_def, dg.DailyPartitionsDefinition)
    assert dg.AssetKey("outcome_days") in graph.get(dg.AssetKey("daily_outcomes")).parent_keys
    conditioned = {key.to_user_string() for key in graph.get_all_asset_keys() if graph.get(key).automation_condition}
    assert conditioned == {
        "daily_outcomes", "pattern_summaries_daily", "pattern_summaries_weekly", "confidence_calibration",
        "confidence_calibration_by_service", "drift_metrics", "learning_snapshots_daily", "learning_snapshots_weekly",
        "learning_snapshots_monthly",
    }


def test_building_the_location_shows_no_beta_or_preview_notice() -> None:
    """The beta and preview APIs the location uses are silenced where called: a command's output stays clean."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        location()
    notices = [str(w.message) for w in caught if issubclass(w.category, (dg.BetaWarning, dg.PreviewWarning))]
    assert notices == []
