"""The morning checklist: periods relative to --at, results per partition, exit codes, one digest per tick."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
from click.testing import CliRunner

from opx_learning.app import launch
from opx_learning.cli.main import cli
from opx_learning.defs.monitors import record_heartbeat
from opx_learning.safety.audit import new_record
from opx_learning.safety.models import SYSTEM, AuditStatus
from opx_learning_tests.wiring import location, resource, settings

DAILY = {
    "operations_succeeded_last_24h", "error_rate_under_10_percent_last_24h", "scheduled_daily_pattern_extraction",
    "scheduled_daily_snapshot", "no_failure_or_timeout_alerts", "stored_data_integrity", "monitors_ticking",
    "late_outcomes_pending",
}
MONDAY = {
    "scheduled_weekly_pattern_extraction", "weekly_patterns_cover_every_service", "scheduled_weekly_snapshot",
    "weekly_success_rate_over_90_percent", "weekly_duration_trend_stable", "weekly_error_rate_under_10_percent",
}
FIRST_MONDAY = {
    "scheduled_monthly_calibration", "calibration_has_at_least_30_outcomes", "calibration_drift_within_0_15",
    "scheduled_monthly_snapshot", "monthly_drift_alerts",
}


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout


def _items(rows: list[dict]) -> dict[str, dict]:
    return {row["item"]: row for row in rows}


@pytest.mark.parametrize(
    ("at", "lists", "day", "week", "month"),
    [
        ("2025-10-28T09:00:00Z", DAILY, "2025-10-27", None, None),  # a Tuesday
        ("2025-10-27T09:00:00Z", DAILY | MONDAY, "2025-10-26", "2025-10-19", None),  # a Monday, not the first
        ("2025-11-03T09:00:00Z", DAILY | MONDAY | FIRST_MONDAY, "2025-11-02", "2025-10-26", "2025-10-01"),
        ("2025-09-01T09:00:00Z", DAILY | MONDAY | FIRST_MONDAY, "2025-08-31", "2025-08-24", "2025-08-01"),
    ],
)
def test_dagster_checklist_items_evaluate_their_period(
    instance: dg.DagsterInstance, at: str, lists: set[str], day: str, week: str | None, month: str | None
) -> None:
    items = _items(launch.run_checklist(settings(), instance, at))
    assert set(items) == lists
    expected = {"DAILY": day, "WEEKLY": week, "MONTHLY": month}
    for name, row in items.items():
        if name in ("stored_data_integrity", "monitors_ticking", "late_outcomes_pending"):
            assert row["partition"] is None
            continue
        cadence = "DAILY" if name in DAILY else "WEEKLY" if name in MONDAY else "MONTHLY"
        assert row["partition"] == expected[cadence], name
    # Nothing ran: the scheduled pattern extraction of the previous day FAILs and says why.
    assert items["scheduled_daily_pattern_extraction"]["status"] == "FAIL"
    assert items["scheduled_daily_pattern_extraction"]["figure"] == (
        f"no SCHEDULED PATTERN_EXTRACTION attempt and {day} is not materialized"
    )


def _drift_history(instance: dg.DagsterInstance, partition: str) -> list[str]:
    key = dg.AssetCheckKey(dg.AssetKey("confidence_calibration"), "calibration_drift_within_0_15")
    records = instance.event_log_storage.get_asset_check_execution_history(key, limit=50)
    statuses = []
    for record in records:
        if record.partition != partition:
            continue
        evaluation = record.event.dagster_event.event_specific_data
        statuses.append("PASS" if evaluation.passed else evaluation.severity.value)
    return statuses


def test_dagster_drifting_month_warn_survives_recalibrating_an_older_month(instance: dg.DagsterInstance) -> None:
    code, _ = _invoke("seed", "--start", "2025-08-01", "--end", "2025-11-05", "--per-day", "40",
                      "--overconfident-month", "2025-10")
    assert code == 0
    for start, end in (("2025-10-01", "2025-11-01"), ("2025-09-01", "2025-10-01")):
        code, output = _invoke("trigger", "calibrate", "--start", start, "--end", end)
        assert code == 0, output
    # The first Monday after October judges October, however recently September was recalibrated.
    code, output = _invoke("checklist", "--at", "2025-11-03", "--json")
    report = json.loads(output)
    assert report["at"] == "2025-11-03T09:00:00.000Z" and report["lists"] == ["daily", "monday", "first_monday"]
    drift = _items(report["items"])["calibration_drift_within_0_15"]
    assert (drift["status"], drift["period"], drift["partition"]) == ("WARN", "2025-10", "2025-10-01")
    assert "exceeds 0.15" in drift["figure"] and "strongly overconfident" in drift["figure"]
    alerts = _items(report["items"])["monthly_drift_alerts"]
    assert alerts["status"] == "WARN" and alerts["period"] == "2025-10"
    assert code == 1  # nothing was scheduled: the scheduled items FAIL
    # September's first Monday passes September; October's stored result is still the WARN.
    september = _items(launch.run_checklist(settings(), instance, "2025-10-06T09:00:00Z"))["calibration_drift_within_0_15"]
    assert (september["status"], september["partition"]) == ("PASS", "2025-09-01")
    assert _drift_history(instance, "2025-10-01") == ["WARN"]
    assert _drift_history(instance, "2025-09-01") == ["PASS"]


def test_dagster_checklist_bad_at_exits_2(instance: dg.DagsterInstance) -> None:
    result = CliRunner().invoke(cli, ["checklist", "--at", "yesterday"])
    assert result.exit_code == 2 and "--at" in result.output and "yesterday" in result.output


def _scheduled(audit: object, operation: str, cadence: str, start: datetime, end: datetime, ran_at: datetime,
               status: str = "SUCCESS", seconds: float = 3.0) -> str:
    parameters = {"start_date": start.isoformat(), "end_date": end.isoformat(), "time_window": cadence}
    if operation == "SNAPSHOT":
        parameters["snapshot_type"] = cadence
    record = new_record(operation, "SCHEDULED", SYSTEM, parameters=parameters, start_time=ran_at)
    results = {"partitions": 1} if status == "SUCCESS" else {"failure_reason": "UPSTREAM_MISSING"}
    audit.append(record.completed(AuditStatus.parse(status), ran_at + timedelta(seconds=seconds), results))
    return record.audit_id


def _a_good_monday_night(instance: dg.DagsterInstance) -> None:
    """Monday 2025-10-27 as the schedules leave it: patterns at 00:00, snapshot at 01:00 on Tuesday, both quick."""
    audit = resource("safety").guard().audit
    day, end = datetime(2025, 10, 27, tzinfo=UTC), datetime(2025, 10, 28, tzinfo=UTC)
    for asset, operation, hour in (("pattern_summaries_daily", "PATTERN_EXTRACTION", 0),
                                   ("learning_snapshots_daily", "SNAPSHOT", 1)):
        audit_id = _scheduled(audit, operation, "DAILY", day, end, end + timedelta(hours=hour))
        instance.report_runless_asset_event(dg.AssetMaterialization(
            asset, partition="2025-10-27",
            metadata={"audit_id": audit_id, "trigger_type": "SCHEDULED", "outcomes": 40, "empty": False},
        ))
    # The daemon runs: every sensor that starts RUNNING ticked a minute before the checklist.
    for sensor in ("audit_run_terminated_sensor", "operations_alert_sensor", "monitors_watchdog_sensor"):
        record_heartbeat(instance, sensor, "sensor", at=datetime(2025, 10, 28, 8, 59, tzinfo=UTC))


def _tick(instance: dg.DagsterInstance, at: datetime) -> list[dict]:
    with dg.build_schedule_context(instance=instance, scheduled_execution_time=at) as context:
        (request,) = location().get_schedule_def("morning_checklist_schedule").evaluate_tick(context).run_requests
    job = location().resolve_job_def("morning_checklist_job")
    result = job.execute_in_process(instance=instance, tags=request.tags, run_config=launch.QUIET)
    assert result.success
    return result.output_for_node("morning_checklist")


def _alerts(home: Path) -> list[dict]:
    path = home / "alerts.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_dagster_all_pass_tick_sends_one_p3_heartbeat(instance: dg.DagsterInstance, opx_home: Path) -> None:
    _a_good_monday_night(instance)
    tuesday = datetime(2025, 10, 28, 9, tzinfo=UTC)
    rows = _tick(instance, tuesday)
    assert {row["status"] for row in rows} == {"PASS"}, [r for r in rows if r["status"] != "PASS"]
    _tick(instance, tuesday)  # the same tick evaluated again does not page twice
    (digest,) = _alerts(opx_home)
    assert (digest["alarm"], digest["severity"], digest["action"]) == ("MORNING_CHECKLIST", "P3", "NONE")
    assert digest["details"]["summary"] == "0 FAIL, 0 WARN, 8 PASS" and digest["details"]["items"] == []
    assert _invoke("checklist", "--at", "2025-10-28T09:00:00Z")[0] == 0


def test_dagster_failing_tick_sends_one_digest_at_the_worst_severity(
    instance: dg.DagsterInstance, opx_home: Path
) -> None:
    _a_good_monday_night(instance)
    audit = resource("safety").guard().audit
    # A calibration attempt failed at 03:00: its alarm is P0, which the digest carries.
    _scheduled(audit, "CALIBRATION", "MONTHLY", datetime(2025, 9, 1, tzinfo=UTC), datetime(2025, 10, 1, tzinfo=UTC),
               datetime(2025, 10, 28, 3, tzinfo=UTC), status="FAILED")
    rows = _items(_tick(instance, datetime(2025, 10, 28, 9, tzinfo=UTC)))
    assert rows["operations_succeeded_last_24h"]["status"] == "FAIL"
    assert rows["no_failure_or_timeout_alerts"]["severity"] == "P0"
    assert rows["scheduled_daily_pattern_extraction"]["status"] == "PASS"
    (digest,) = _alerts(opx_home)
    assert (digest["alarm"], digest["severity"], digest["action"]) == ("MORNING_CHECKLIST", "P0", "INVESTIGATE")
    # 1 of 1 calibrations failed: the error rate (100 % > 20 %) FAILs too.
    assert digest["details"]["summary"] == "3 FAIL, 0 WARN, 5 PASS"
    assert {(item["item"], item["severity"]) for item in digest["details"]["items"]} == {
        ("operations_succeeded_last_24h", "P1"), ("error_rate_under_10_percent_last_24h", "P1"),
        ("no_failure_or_timeout_alerts", "P0"),
    }
    code, output = _invoke("checklist", "--at", "2025-10-28T09:00:00Z")
    assert code == 1 and "FAIL  operations_succeeded_last_24h" in output
