"""What the Dagster UI reads (the instance's event log) is what happened: per-partition metadata, named jobs,
skips with their reason, no check left PLANNED, empty windows flagged."""

from __future__ import annotations

import json
import time
from typing import Any

import dagster as dg
import polars as pl
from click.testing import CliRunner
from dagster._core.execution.backfill import PartitionBackfill
from dagster._core.storage.asset_check_execution_record import (
    AssetCheckExecutionRecordStatus,
)

from opx_learning.app import launch
from opx_learning.cli.main import cli
from opx_learning.core.windows import Window
from opx_learning.defs.jobs import JOB_ASSETS, job_for_assets
from opx_learning.defs.outcome_days import OBSERVATION_JOB
from opx_learning.safety.models import AuthorityType, Principal
from opx_learning.stores.outcomes import outcome_store
from opx_learning_tests import wiring
from opx_learning_tests.wiring import location, resource, settings

# Figures of the run, shared by the partitions it covered; everything else is the partition's own.
RUN_FIGURES = {"duration_ms", "duration_per_partition_ms", "partitions", "range", "audit_id", "trigger_type"}
PLANNED = AssetCheckExecutionRecordStatus.PLANNED


def _latest(instance: dg.DagsterInstance, asset: str, key: str) -> dict[str, Any]:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[key]), limit=1
    ).records
    assert records, f"{asset} {key} not materialized"
    return {name: value.value for name, value in records[0].asset_materialization.metadata.items()}


def _own(metadata: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in metadata.items() if name not in RUN_FIGURES}


def _count(start: str, end: str) -> tuple[int, int]:
    """(outcomes, false positives) of a window, read from the outcome store."""
    frame = outcome_store(wiring.settings()).read(Window.parse(start, end))
    return frame.height, int(frame["false_positive"].sum())


def _planned(instance: dg.DagsterInstance) -> list[tuple[str, str | None]]:
    
    left = []
    for key in location().resolve_asset_graph().asset_check_keys:
        for record in instance.event_log_storage.get_asset_check_execution_history(key, limit=10_000):
            if record.status is PLANNED:
                left.append((key.to_user_string(), record.partition))
    return left


def test_dagster_daily_range_records_each_days_own_metadata(instance: dg.DagsterInstance, seeded: pl.DataFrame) -> None:
    days = ["2025-10-05", "2025-10-06", "2025-10-07", "2025-10-08"]
    alone = {}
    for day in days:
        assert launch.materialize(settings(), instance, ["daily_outcomes", "pattern_summaries_daily"], [day]).success
        alone[day] = _latest(instance, "pattern_summaries_daily", day)
    run = launch.materialize(settings(), instance, ["daily_outcomes", "pattern_summaries_daily"], days)
    assert run.success, run.failures
    counts = set()
    for day in days:
        ranged = _latest(instance, "pattern_summaries_daily", day)
        assert _own(ranged) == _own(alone[day]), day
        outcomes, false_positives = _count(day, f"{day}T23:59:59.999Z")
        assert (ranged["total_incidents"], ranged["false_positives"]) == (outcomes, false_positives)
        assert ranged["fp_rate"] == false_positives / outcomes
        # The run's own figures are the run's (tags), not the partition's metadata.
        assert not {"range", "partitions", "duration_ms", "duration_per_partition_ms"} & set(ranged)
        assert ranged["audit_id"] and ranged["trigger_type"]
        assert _latest(instance, "daily_outcomes", day)["outcomes"] == outcomes
        counts.add(outcomes)
    assert len(counts) > 1  # the days differ, so a range total stamped on each would show
    tags = instance.get_run_by_id(run.run_id).tags
    assert tags["opx/pattern_summaries_daily/range"] == "2025-10-05...2025-10-08"
    assert tags["opx/pattern_summaries_daily/partitions"] == "4"
    assert float(tags["opx/pattern_summaries_daily/duration_ms"]) > 0


def test_dagster_weekly_range_records_each_weeks_own_metadata(instance: dg.DagsterInstance, seeded: pl.DataFrame) -> None:
    weeks = {"2025-10-05": "2025-10-12", "2025-10-12": "2025-10-19"}
    alone = {}
    for week in weeks:
        assert launch.materialize(settings(), instance, ["pattern_summaries_weekly"], [week]).success
        alone[week] = _latest(instance, "pattern_summaries_weekly", week)
    assert launch.materialize(settings(), instance, ["pattern_summaries_weekly"], list(weeks)).success
    for week, end in weeks.items():
        ranged = _latest(instance, "pattern_summaries_weekly", week)
        assert _own(ranged) == _own(alone[week]), week
        assert ranged["total_incidents"] == _count(week, end)[0]


def test_dagster_range_run_leaves_no_check_planned(instance: dg.DagsterInstance, seeded: pl.DataFrame) -> None:
    assert launch.materialize(settings(), instance, ["daily_outcomes", "pattern_summaries_daily"], ["2025-10-01", "2025-10-02",
                                                                                       "2025-10-03"]).success
    assert launch.materialize(settings(), instance, ["pattern_summaries_weekly"], ["2025-10-05", "2025-10-12"]).success
    assert launch.materialize(settings(), instance, ["learning_snapshots_daily"], ["2025-10-01", "2025-10-02"]).success
    assert _planned(instance) == []
    key = dg.AssetCheckKey(dg.AssetKey("pattern_summaries_daily"), "window_has_outcomes")
    history = instance.event_log_storage.get_asset_check_execution_history(key, limit=10)
    assert sorted(record.partition for record in history) == ["2025-10-01", "2025-10-02", "2025-10-03"]


def test_dagster_empty_day_warns_on_the_asset(instance: dg.DagsterInstance, seeded: pl.DataFrame) -> None:
    # The seeded outcomes start 2025-09-01: 08-30 and 08-31 hold none.
    days = ["2025-08-30", "2025-08-31", "2025-09-01"]
    run = launch.materialize(settings(), instance, ["daily_outcomes", "pattern_summaries_daily"], days)
    assert run.success, run.failures
    key = dg.AssetCheckKey(dg.AssetKey("pattern_summaries_daily"), "window_has_outcomes")
    history = instance.event_log_storage.get_asset_check_execution_history(key, limit=10)
    evaluations = {record.partition: record.evaluation for record in history}
    assert set(evaluations) == set(days)
    for day in ("2025-08-30", "2025-08-31"):
        evaluation = evaluations[day]
        assert (evaluation.passed, evaluation.severity) == (False, dg.AssetCheckSeverity.WARN)
        assert evaluation.metadata["empty_window"].value is True
        assert evaluation.description == f"no outcomes in the daily window {day}: its summaries are zeros"
        assert _latest(instance, "pattern_summaries_daily", day)["empty_window"] is True
    assert evaluations["2025-09-01"].passed
    assert evaluations["2025-09-01"].metadata["outcomes"].value == _count("2025-09-01", "2025-09-01T23:59:59.999Z")[0]
    assert _latest(instance, "pattern_summaries_daily", "2025-09-01")["empty_window"] is False


def test_dagster_kill_switch_skip_is_tagged_on_the_run_and_each_partition(
    instance: dg.DagsterInstance, seeded: pl.DataFrame
) -> None:
    guard = resource("safety").guard()
    guard.kill_switch.disable(Principal("ops-admin", AuthorityType.EMERGENCY_OVERRIDE), "incident 42")
    days = ["2025-10-01", "2025-10-02"]
    # A Catalog backfill of the two days, and the run it launches (single-run backfill policy: one run).
    backfill = PartitionBackfill.from_asset_partitions(
        backfill_id="bkfl0001", asset_graph=launch.definitions(settings()).resolve_asset_graph(), partition_names=days,
        asset_selection=[dg.AssetKey("pattern_summaries_daily")], backfill_timestamp=time.time(), tags={},
        dynamic_partitions_store=instance, all_partitions=False, title=None, description=None, run_config=None,
    )
    instance.add_backfill(backfill)
    run = launch.materialize(settings(), instance, ["daily_outcomes", "pattern_summaries_daily"], days, {"dagster/backfill": "bkfl0001"})
    assert run.success
    tags = instance.get_run_by_id(run.run_id).tags
    assert tags["opx/skipped"] == "KILL_SWITCH_ACTIVE"
    assert "incident 42" in tags["opx/skip_message"]
    # The backfill is Dagster's (its daemon writes it): the skip writes nothing on it.
    assert instance.get_backfill("bkfl0001").error is None
    for day in days:
        records = instance.fetch_observations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("pattern_summaries_daily"), asset_partitions=[day]), limit=5
        ).records
        assert [r.asset_observation.metadata["skipped"].value for r in records] == ["KILL_SWITCH_ACTIVE"], day
        # Each partition says what was skipped, by which run of which backfill, and why.
        note = records[0].asset_observation.metadata["note"].value
        assert note.startswith("KILL_SWITCH_ACTIVE: pattern_summaries_daily 2025-10-01..2025-10-02 was SKIPPED, not failed")
        assert f"run {run.run_id} of backfill bkfl0001" in note and "incident 42" in note
    assert instance.get_materialized_partitions(dg.AssetKey("pattern_summaries_daily")) == set()
    # The window check did not run: its planned rows stay, which the UI shows as skipped (the run succeeded).
    assert sorted(_planned(instance)) == [("pattern_summaries_daily:window_has_outcomes", day) for day in days]


def test_dagster_every_launch_is_a_named_job(instance: dg.DagsterInstance) -> None:
    result = CliRunner().invoke(
        cli, ["demo", "--days", "35", "--per-day", "40", "--end", "2025-12-01", "--json"], catch_exceptions=False
    )
    report = json.loads(result.stdout)
    assert all(run["success"] for run in report["runs"]), report["runs"]
    names = [record.dagster_run.job_name for record in instance.get_run_records()]
    # + the checklist, + the observation of the outcome store (a data version per day) before the runs
    assert len(names) == len(report["runs"]) + 2
    assert names.count(OBSERVATION_JOB) == 1
    assert set(names) <= {*JOB_ASSETS, "morning_checklist_job", OBSERVATION_JOB}, names
    assert _planned(instance) == []
    for day in ("2025-10-28", "2025-11-15", "2025-11-30"):
        assert _latest(instance, "pattern_summaries_daily", day)["total_incidents"] == _count(day, f"{day}T23:59:59.999Z")[0]


def test_dagster_job_for_assets() -> None:
    assert job_for_assets(["pattern_summaries_daily", "daily_outcomes"]) == "daily_patterns_job"
    assert job_for_assets(["drift_metrics", "confidence_calibration", "confidence_calibration_by_service"]) == "monthly_calibration_job"
    assert job_for_assets(["learning_snapshot_custom"]) == "custom_snapshot_job"
    try:
        job_for_assets(["pattern_summaries_daily", "learning_snapshots_daily"])
    except ValueError as error:
        assert "no job materializes exactly learning_snapshots_daily, pattern_summaries_daily" in str(error)
    else:
        raise AssertionError("expected ValueError")
