"""Guarded assets check the kill switch before reading upstream data; a missing upstream fails audited, not loudly."""

from __future__ import annotations

import json

import dagster as dg
import polars as pl
from click.testing import CliRunner

from opx_learning.app import launch
from opx_learning.cli.main import cli
from opx_learning.safety.models import (
    AuditRecord,
    AuditStatus,
    AuthorityType,
    Principal,
)
from opx_learning_tests.wiring import resource, settings


def _records() -> list[AuditRecord]:
    """The audit records of learning operations (the kill-switch change itself left out)."""
    records = resource("safety").guard().audit.recent(500)
    return [r for r in records if r.operation_type.value in ("PATTERN_EXTRACTION", "CALIBRATION", "SNAPSHOT")]


def _disable_kill_switch() -> None:
    resource("safety").guard().kill_switch.disable(Principal("ops-admin", AuthorityType.EMERGENCY_OVERRIDE), "feed broken")


def test_snapshots_without_summaries_skip_under_kill_switch(instance: dg.DagsterInstance, seeded: pl.DataFrame) -> None:
    _disable_kill_switch()
    for asset, key in (
        ("learning_snapshots_daily", "2025-10-01"),
        ("learning_snapshots_weekly", "2025-10-05"),
        ("learning_snapshots_monthly", "2025-10-01"),
    ):
        run = launch.materialize(settings(), instance, [asset], [key], {"dagster/schedule_name": "x"})
        assert run.success and run.failures == [], (asset, run.failures)
        assert run.skipped == {asset: "KILL_SWITCH_ACTIVE"}
    records = _records()
    assert [r.status for r in records] == [AuditStatus.SKIPPED] * 3
    assert {r.skip_reason for r in records} == {"KILL_SWITCH_ACTIVE"}


def test_calibration_skip_skips_drift_without_failing(instance: dg.DagsterInstance, seeded: pl.DataFrame) -> None:
    _disable_kill_switch()
    run = launch.materialize(settings(), instance, ["confidence_calibration", "drift_metrics"], ["2025-10-01"])
    assert run.success and run.failures == []
    assert run.skipped == {"confidence_calibration": "KILL_SWITCH_ACTIVE", "drift_metrics": "UPSTREAM_SKIPPED"}
    (record,) = _records()
    assert (record.operation_type.value, record.status) == ("CALIBRATION", AuditStatus.SKIPPED)


def test_snapshot_with_missing_summaries_fails_audited(instance: dg.DagsterInstance, seeded: pl.DataFrame) -> None:
    assert launch.materialize(settings(), instance, ["pattern_summaries_daily"], ["2025-10-01", "2025-10-02"]).success
    run = launch.materialize(settings(), instance, ["learning_snapshots_monthly"], ["2025-10-01"])
    assert not run.success and run.materialized == {}
    (failure,) = run.failures
    # October has 31 days, two are materialized: 29 missing, the first ten listed.
    assert "SNAPSHOT FAILED (UPSTREAM_MISSING): pattern_summaries_daily is not materialized for 29 partition(s): " in failure
    assert "2025-10-03, 2025-10-04" in failure and "and 19 more" in failure
    assert "Stack Trace" not in failure
    record = next(r for r in _records() if r.operation_type.value == "SNAPSHOT")
    assert record.status is AuditStatus.FAILED and record.run_id == run.run_id
    assert record.results["failure_reason"] == "UPSTREAM_MISSING"
    assert record.results["missing_partitions"] == 29
    assert "2025-10-03" in record.error_message


def test_drift_without_calibration_fails_clearly(instance: dg.DagsterInstance, seeded: pl.DataFrame) -> None:
    run = launch.materialize(settings(), instance, ["drift_metrics"], ["2025-10-01"])
    assert not run.success
    expected = (
        "drift_metrics: not computed (UPSTREAM_MISSING): confidence_calibration is not materialized for 1 "
        "partition(s): 2025-10-01; calibrate those months first"
    )
    assert run.failures == [expected]


def test_demo_under_kill_switch_skips_everything_and_fails_nothing(instance: dg.DagsterInstance) -> None:
    _disable_kill_switch()
    result = CliRunner().invoke(
        cli, ["demo", "--days", "32", "--per-day", "5", "--end", "2025-11-02", "--json"], catch_exceptions=False
    )
    report = json.loads(result.stdout)
    assert all(run["success"] and run["failures"] == [] for run in report["runs"]), report["runs"]
    assert "kill switch is active" in report["kill_switch"]
    # Daily + weekly patterns, one calibration run over both months, 3 cadence snapshots, 3 custom assets:
    # 9 operations, each refused before its run (daily outcomes, and the calibration run's drift and
    # by-service calibration, are then not launched either).
    assert report["skipped"] == {"KILL_SWITCH_ACTIVE": 9, "NOT_LAUNCHED": 3}
    records = _records()
    assert len(records) == 9 and {r.status for r in records} == {AuditStatus.SKIPPED}
    assert {r.operation_type.value for r in records} == {"PATTERN_EXTRACTION", "CALIBRATION", "SNAPSHOT"}
    assert "Stack Trace" not in result.stderr
    # A fresh home under the kill switch has nothing materialized: the checklist says so and the exit code is 1.
    assert result.exit_code == 1
    assert {row["status"] for row in report["checklist"]} >= {"FAIL"}
