"""Issue 7 items 3 and 4 as an operator sees them: SUCCESS only when stored, every launch path guarded.

Runs are launched as the Dagster UI launches them (a run of the code location's assets on
the instance, DAGSTER-NOTES) or through the CLI; what is checked is what an operator reads:
the instance's runs and materializations, the audit records, `alerts.jsonl` and exit codes.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from click.testing import CliRunner

from opx_learning.backends import guard_for
from opx_learning.cli.main import cli
from opx_learning.safety.guard import Guard
from opx_learning.safety.models import (
    AuditRecord,
    AuditStatus,
    AuthorityType,
    Principal,
)
from opx_learning_tests import wiring
from opx_learning_tests.dagster.conftest import daemon_tick
from opx_learning_tests.wiring import location, resource, sensor
from opx_learning_tests.wiring import schedule as schedule_def

ADMIN = Principal("ops-admin", AuthorityType.EMERGENCY_OVERRIDE)
MONTH = {"start_date": "2025-10-01", "end_date": "2025-11-01", "time_window": "MONTHLY"}


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def _json(output: str) -> dict:
    return json.loads(output[output.index("{\n") :])


def _guard() -> Guard:
    return guard_for(wiring.settings())


def _records(operation: str) -> list[AuditRecord]:
    return sorted(_guard().audit.by_operation(operation, limit=None), key=lambda r: r.start_time)


def _ui_run(instance: dg.DagsterInstance, asset: str, partition: str, tags: dict[str, str]) -> dg.ExecuteInProcessResult:
    """A run of the code location's assets on the instance with the given tags, no schedule involved."""
    assets = list({id(a): a for a in location().get_repository_def().assets_defs_by_key.values()}.values())
    return dg.materialize(
        assets, selection=[asset], instance=instance, partition_key=partition, tags=tags, raise_on_error=False
    )


def _alerts(home: Path) -> list[dict]:
    path = home / "alerts.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _alert_sensor_tick(instance: dg.DagsterInstance) -> None:
    context = dg.build_sensor_context(
        instance=instance, resources={"safety": resource("safety"), "alerts": resource("alerts")}
    )
    sensor("operations_alert_sensor").evaluate_tick(context)


def _materialized(instance: dg.DagsterInstance, asset: str) -> set[str]:
    return set(instance.get_materialized_partitions(dg.AssetKey(asset)))


# --- SUCCESS means stored ---------------------------------------------------------------------


def test_unwritable_asset_storage_ends_the_trigger_failed_with_an_alert(
    instance: dg.DagsterInstance, seeded: pl.DataFrame, opx_home: Path
) -> None:
    blocked = opx_home / "assets" / "pattern_summaries_daily"
    blocked.parent.mkdir(parents=True, exist_ok=True)
    blocked.write_text("a file where the asset's directory should be")
    code, output = _invoke("trigger", "extract-patterns", "--start", "2025-10-01", "--end", "2025-10-03", "--json")
    assert code == 1, output
    report = _json(output)
    assert report["status"] == "FAILED"
    record = _guard().audit.get(report["audit_id"])
    assert record.status is AuditStatus.FAILED
    assert record.results["failure_reason"] == "PERSIST_FAILED"
    assert "pattern_summaries_daily partition 2025-10-01 could not be stored" in record.error_message
    assert (record.results["partitions_stored"], record.results["partitions_skipped"]) == (
        [],
        ["2025-10-01", "2025-10-02"],
    )
    run = instance.get_run_by_id(report["run"]["run_id"])
    assert run.status is dg.DagsterRunStatus.FAILURE
    assert _materialized(instance, "pattern_summaries_daily") == set()
    _alert_sensor_tick(instance)
    failures = [a for a in _alerts(opx_home) if a["audit_id"] == report["audit_id"]]
    # The failure itself (P2) and, as the only attempt of the hour, a 100 % error rate (P1).
    assert sorted((a["severity"], a["alarm"]) for a in failures) == [("P1", "HIGH_ERROR_RATE"), ("P2", "OPERATION_FAILURE")]


def test_one_partition_failing_to_store_is_not_success(
    instance: dg.DagsterInstance, seeded: pl.DataFrame, opx_home: Path
) -> None:
    # A directory where the partition's file goes: the rename into place fails.
    (opx_home / "assets" / "pattern_summaries_daily" / "2025-10-02.parquet").mkdir(parents=True)
    code, output = _invoke("trigger", "extract-patterns", "--start", "2025-10-01", "--end", "2025-10-04", "--json")
    assert code == 1, output
    record = _guard().audit.get(_json(output)["audit_id"])
    assert record.status is AuditStatus.FAILED and "partition 2025-10-02" in record.error_message
    assert record.results["partitions_stored"] == ["2025-10-01"]
    assert record.results["partitions_skipped"] == ["2025-10-02", "2025-10-03"]
    # What was stored is materialized, nothing else.
    assert _materialized(instance, "pattern_summaries_daily") == {"2025-10-01"}


def test_stored_outputs_are_written_before_the_record_succeeds(
    instance: dg.DagsterInstance, seeded: pl.DataFrame, opx_home: Path
) -> None:
    code, output = _invoke("trigger", "snapshot", "--type", "custom", "--start", "2025-10-01", "--end", "2025-10-08",
                           "--json")
    assert code == 0, output
    record = _guard().audit.get(_json(output)["audit_id"])
    assert record.status is AuditStatus.SUCCESS
    (key,) = record.results["partitions_stored"]
    stored = json.loads((opx_home / "assets" / "learning_snapshot_custom" / f"{key}.json").read_text())
    assert record.results["snapshot_ids"] == [stored["snapshot_id"]]
    assert len(list((opx_home / "snapshots").rglob("*.json"))) == 1


# --- Range runs re-check the kill switch --------------------------------------------------------


def test_kill_switch_disabled_mid_range_stops_the_partitions_not_yet_stored(
    instance: dg.DagsterInstance, seeded: pl.DataFrame, opx_home: Path
) -> None:
    # The operator disables the kill switch as soon as the 5th partition is recorded in the manifest;
    # the run re-checks the switch before storing each partition, so it stops after a prefix of the range.
    folder = opx_home / "assets" / "pattern_summaries_daily"
    days = [(datetime(2025, 9, 1) + timedelta(days=n)).date().isoformat() for n in range(90)]
    fifth = f"pattern_summaries_daily/{days[4]}.parquet"
    disabled = threading.Event()

    def operator() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with sqlite3.connect(opx_home / "state.db") as conn:
                found = conn.execute("SELECT 1 FROM manifest WHERE key = ?", (fifth,)).fetchone()
            conn.close()
            if found:
                _guard().kill_switch.disable(ADMIN, "bad outcomes feed")
                disabled.set()
                return
            time.sleep(0.001)

    thread = threading.Thread(target=operator, daemon=True)
    thread.start()
    code, output = _invoke("trigger", "extract-patterns", "--start", days[0], "--end", "2025-11-30", "--json")
    thread.join(timeout=30)
    assert disabled.is_set()
    assert code == 1, output
    report = _json(output)
    assert report["status"] == "SKIPPED"
    assert report["run"]["skipped"] == {"pattern_summaries_daily": "KILL_SWITCH_ACTIVE"}
    assert report["run"]["success"] is True and report["run"]["failures"] == []
    record = _guard().audit.get(report["audit_id"])
    stored = record.results["partitions_stored"]
    assert 5 <= len(stored) < len(days)
    assert stored == days[: len(stored)] and record.results["partitions_skipped"] == days[len(stored):]
    assert (record.status, record.skip_reason) == (AuditStatus.SKIPPED, "KILL_SWITCH_ACTIVE")
    assert f"stored {len(stored)} of {len(days)} partition(s)" in record.results["message"]
    assert _materialized(instance, "pattern_summaries_daily") == set(stored)
    assert sorted(p.name for p in folder.iterdir()) == [f"{key}.parquet" for key in stored]


# --- UI / GraphQL launches ---------------------------------------------------------------------


def test_ui_runs_cannot_claim_a_principal_or_scheduled_and_are_rate_limited(
    instance: dg.DagsterInstance, seeded: pl.DataFrame
) -> None:
    tags = {"opx/principal": "ops-admin", "opx/trigger_type": "SCHEDULED", "dagster/user": "ops-admin"}
    results = [_ui_run(instance, "confidence_calibration", "2025-10-01", tags) for _ in range(4)]
    assert all(result.success for result in results)
    records = _records("CALIBRATION")
    assert [(r.triggered_by.principal, r.triggered_by.authority.value, r.trigger_type.value) for r in records] == [
        ("dagster-ui", "HUMAN_OPERATOR", "MANUAL")
    ] * 4
    assert [r.status for r in records] == [AuditStatus.SUCCESS] * 3 + [AuditStatus.SKIPPED]
    assert records[3].skip_reason == "RATE_LIMIT_EXCEEDED"
    assert records[3].results["rate_limit"]["limit"] == 3
    assert [r.run_id for r in records] == [result.run_id for result in results]


def test_ui_run_tagged_emergency_is_skipped_under_kill_switch_and_adopts_nothing(
    instance: dg.DagsterInstance, seeded: pl.DataFrame
) -> None:
    guard = _guard()
    guard.kill_switch.disable(ADMIN, "bad outcomes feed")
    emergency = guard.begin("CALIBRATION", "MANUAL", ADMIN, MONTH, emergency=True, rate_limited=True, adoptable=True)
    assert emergency.allowed and emergency.emergency
    attempts = [
        {"opx/audit_id": emergency.audit_id},
        {"opx/audit_id": emergency.audit_id, "opx/adoption_token": "guessed"},
        {"opx/audit_id": emergency.audit_id, "opx/principal": "ops-admin", "opx/trigger_type": "MANUAL",
         "opx/emergency": "true"},
    ]
    for tags in attempts:
        result = _ui_run(instance, "confidence_calibration", "2025-10-01", tags)
        assert result.success and result.get_asset_materialization_events() == []
    untouched = guard.audit.get(emergency.audit_id)
    assert (untouched.status, untouched.run_id, untouched.version) == (AuditStatus.RUNNING, None, 1)
    own = [r for r in _records("CALIBRATION") if r.audit_id != emergency.audit_id]
    assert len(own) == 3
    for record in own:
        assert (record.status, record.skip_reason, record.trigger_type.value) == (
            AuditStatus.SKIPPED,
            "KILL_SWITCH_ACTIVE",
            "MANUAL",
        )
        assert record.triggered_by.principal == "dagster-ui" and "emergency" not in record.parameters
        assert record.parameters["adoption_refused"].startswith(emergency.audit_id)
    assert _materialized(instance, "confidence_calibration") == set()


def test_adoption_token_works_once_for_one_run(instance: dg.DagsterInstance, seeded: pl.DataFrame) -> None:
    guard = _guard()
    attempt = guard.begin("CALIBRATION", "MANUAL", ADMIN, MONTH, rate_limited=True, adoptable=True)
    tags = {"opx/audit_id": attempt.audit_id, "opx/adoption_token": attempt.adoption_token}
    first = _ui_run(instance, "confidence_calibration", "2025-10-01", tags)
    adopted = guard.audit.get(attempt.audit_id)
    assert (adopted.status, adopted.run_id, adopted.triggered_by) == (AuditStatus.SUCCESS, first.run_id, ADMIN)
    assert attempt.adoption_token not in json.dumps(adopted.to_dict())
    replay = _ui_run(instance, "confidence_calibration", "2025-10-01", tags)  # tags copied from the UI
    (other,) = [r for r in _records("CALIBRATION") if r.run_id == replay.run_id]
    assert other.audit_id != attempt.audit_id
    assert (other.triggered_by.principal, other.trigger_type.value) == ("dagster-ui", "MANUAL")


def test_ui_backfill_is_backfill_as_dagster_ui(instance: dg.DagsterInstance, seeded: pl.DataFrame) -> None:
    result = _ui_run(instance, "confidence_calibration", "2025-10-01",
                     {"dagster/backfill": "abcdefgh", "opx/principal": "ops-admin"})
    assert result.success
    (record,) = _records("CALIBRATION")
    assert (record.trigger_type.value, record.triggered_by.principal) == ("BACKFILL", "dagster-ui")


# --- Schedules ---------------------------------------------------------------------------------


def _evaluate(
    instance: dg.DagsterInstance, schedule: dg.ScheduleDefinition, at: datetime, log_key: list[str] | None
) -> dg.ScheduleExecutionData:
    repository = location().get_repository_def()
    with dg.ScheduleEvaluationContext(
        instance.get_ref(), at, log_key, repository.name, schedule.name, resources={"safety": resource("safety")},
        repository_def=repository,
    ) as context:
        return schedule.evaluate_tick(context)


def test_schedule_dry_run_writes_nothing_but_a_daemon_tick_audits_its_skip(
    instance: dg.DagsterInstance, opx_home: Path
) -> None:
    _guard().kill_switch.disable(ADMIN, "bad outcomes feed")
    before = _guard().audit.recent(100)
    at = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
    schedule = schedule_def("daily_patterns_schedule")
    with dg.build_schedule_context(instance=instance, scheduled_execution_time=at,
                                   resources={"safety": resource("safety")}) as context:
        preview = schedule.evaluate_tick(context)
    dry = _evaluate(instance, schedule, at, None)  # what "Test schedule" in the UI evaluates
    for data in (preview, dry):
        assert not data.run_requests and "KILL_SWITCH_ACTIVE" in data.skip_message
    assert _guard().audit.recent(100) == before
    assert _records("PATTERN_EXTRACTION") == []

    tick_id = daemon_tick(instance, schedule.name, at.timestamp())
    real = _evaluate(instance, schedule, at, [location().get_repository_def().name, schedule.name, str(tick_id)])
    assert not real.run_requests and "KILL_SWITCH_ACTIVE" in real.skip_message
    (record,) = _records("PATTERN_EXTRACTION")
    assert (record.status, record.trigger_type.value, record.skip_reason) == (
        AuditStatus.SKIPPED,
        "SCHEDULED",
        "KILL_SWITCH_ACTIVE",
    )


def test_only_the_run_a_schedule_tick_created_is_scheduled(instance: dg.DagsterInstance, seeded: pl.DataFrame) -> None:
    schedule = schedule_def("monthly_calibration_schedule")
    spoofed = _ui_run(instance, "confidence_calibration", "2025-10-01",
                      {"dagster/schedule_name": schedule.name, "dagster/tick": "12345"})
    tick_id = daemon_tick(instance, schedule.name, datetime(2025, 11, 1, tzinfo=UTC).timestamp())
    tags = {"dagster/schedule_name": schedule.name, "dagster/tick": str(tick_id)}
    scheduled = _ui_run(instance, "confidence_calibration", "2025-10-01", tags)
    copied = _ui_run(instance, "confidence_calibration", "2025-10-01", tags)  # a second run claiming the tick
    by_run = {r.run_id: r for r in _records("CALIBRATION")}
    assert by_run[spoofed.run_id].triggered_by.principal == "dagster-ui"
    assert by_run[spoofed.run_id].trigger_type.value == "MANUAL"
    assert (by_run[scheduled.run_id].trigger_type.value, by_run[scheduled.run_id].triggered_by.principal) == (
        "SCHEDULED",
        "system",
    )
    assert (by_run[copied.run_id].trigger_type.value, by_run[copied.run_id].triggered_by.principal) == (
        "MANUAL",
        "dagster-ui",
    )


@pytest.mark.parametrize("principal", ["ops-admin", "alice"])
def test_cli_trigger_keeps_its_principal_through_the_handshake(
    principal: str, instance: dg.DagsterInstance, seeded: pl.DataFrame
) -> None:
    code, output = _invoke("trigger", "calibrate", "--start", "2025-10-01", "--end", "2025-11-01", "--principal",
                           principal, "--json")
    assert code == 0, output
    report = _json(output)
    record = _guard().audit.get(report["audit_id"])
    assert (record.status, record.triggered_by.principal, record.trigger_type.value) == (
        AuditStatus.SUCCESS,
        principal,
        "MANUAL",
    )
    assert record.run_id == report["run"]["run_id"]
    run = instance.get_run_by_id(record.run_id)
    assert "opx/principal" not in run.tags and run.tags["opx/audit_id"] == record.audit_id
