"""The alert table (docs/design.md#alerts), row by row, on hand-made audit records."""

from __future__ import annotations

from datetime import timedelta

from opx_learning.alerts.rules import (
    drift_alert,
    error_rate_alerts,
    evaluate,
    failed_streak,
    failure_alert,
    kill_switch_alert,
    timeout_alert,
)
from opx_learning.safety.models import AuthorityType, Principal
from opx_learning_tests.alerts.conftest import NOW, record

ADMIN = Principal("ops-admin", AuthorityType.EMERGENCY_OVERRIDE)


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


def test_calibration_failure_is_p0_whatever_the_reason() -> None:
    failed = record("CALIBRATION", "FAILED", started=minutes(3), results={"failure_reason": "INSUFFICIENT_DATA"})
    alert = failure_alert(failed, [])
    assert (alert.severity, alert.alarm, alert.operation) == ("P0", "CALIBRATION_FAILURE", "CALIBRATION")
    assert alert.details["failure_reason"] == "INSUFFICIENT_DATA"
    assert alert.audit_id == failed.audit_id and alert.run_id == failed.run_id


def test_three_consecutive_failures_are_p0_and_skipped_attempts_do_not_break_the_streak() -> None:
    history = [
        record("PATTERN_EXTRACTION", "SUCCESS", started=minutes(50)),
        record("PATTERN_EXTRACTION", "FAILED", started=minutes(40)),
        record("PATTERN_EXTRACTION", "SKIPPED", started=minutes(30), duration=timedelta(0)),
        record("PATTERN_EXTRACTION", "FAILED", started=minutes(20)),
        record("SNAPSHOT", "SUCCESS", started=minutes(15)),
    ]
    latest = record("PATTERN_EXTRACTION", "FAILED", started=minutes(10))
    assert [r.audit_id for r in failed_streak(latest, history)] == [latest.audit_id, history[3].audit_id, history[1].audit_id]
    alert = failure_alert(latest, history)
    assert (alert.severity, alert.alarm) == ("P0", "CONSECUTIVE_FAILURES")
    assert alert.details["consecutive_failures"] == 3


def test_two_consecutive_pattern_or_snapshot_failures_are_p1() -> None:
    for operation in ("PATTERN_EXTRACTION", "SNAPSHOT"):
        history = [
            record(operation, "FAILED", started=minutes(300)),
            record(operation, "SUCCESS", started=minutes(200)),
            record(operation, "FAILED", started=minutes(100)),
        ]
        latest = record(operation, "FAILED", started=minutes(5))
        alert = failure_alert(latest, history)
        assert (alert.severity, alert.alarm, alert.details["consecutive_failures"]) == ("P1", "REPEATED_FAILURE", 2)


def test_single_pattern_or_snapshot_failure_is_p2() -> None:
    for operation in ("PATTERN_EXTRACTION", "SNAPSHOT"):
        history = [record(operation, "SUCCESS", started=minutes(100))]
        alert = failure_alert(record(operation, "FAILED", started=minutes(5)), history)
        assert (alert.severity, alert.alarm, alert.details["consecutive_failures"]) == ("P2", "OPERATION_FAILURE", 1)
    assert failure_alert(record("SNAPSHOT", "SUCCESS", started=minutes(5)), []) is None


def test_error_rate_over_20_percent_is_p1_and_10_to_20_percent_is_p2() -> None:
    def hour(operation: str, failed: int, succeeded: int) -> list:
        rows = [record(operation, "FAILED", started=minutes(10 + i)) for i in range(failed)]
        rows += [record(operation, "SUCCESS", started=minutes(30 + i)) for i in range(succeeded)]
        return rows

    # 1/4 = 25 % > 20 % -> P1; 1/8 = 12.5 % -> P2; 1/10 = 10 % -> nothing; 1/5 = 20 % -> P2 (not above 20 %).
    records = hour("PATTERN_EXTRACTION", 1, 3) + hour("SNAPSHOT", 1, 7) + hour("CALIBRATION", 1, 9)
    records += [record("SNAPSHOT", "FAILED", started=minutes(61))]  # outside the hour
    records += [record("PATTERN_EXTRACTION", "SKIPPED", started=minutes(5), duration=timedelta(0))] * 5
    alerts = {a.operation: a for a in error_rate_alerts(records, NOW)}
    assert set(alerts) == {"PATTERN_EXTRACTION", "SNAPSHOT"}
    assert (alerts["PATTERN_EXTRACTION"].severity, alerts["PATTERN_EXTRACTION"].alarm) == ("P1", "HIGH_ERROR_RATE")
    assert alerts["PATTERN_EXTRACTION"].details["error_rate"] == 0.25
    assert (alerts["SNAPSHOT"].severity, alerts["SNAPSHOT"].alarm) == ("P2", "ELEVATED_ERROR_RATE")
    assert alerts["SNAPSHOT"].details["error_rate"] == 0.125
    boundary = {a.operation: a for a in error_rate_alerts(hour("SNAPSHOT", 1, 4), NOW)}
    assert boundary["SNAPSHOT"].severity == "P2" and boundary["SNAPSHOT"].details["error_rate"] == 0.2


def test_running_longer_than_5_minutes_is_a_p2_timeout() -> None:
    running = record("PATTERN_EXTRACTION", "RUNNING", started=minutes(6))
    alert = timeout_alert(running, NOW)
    assert (alert.severity, alert.alarm, alert.details["elapsed_ms"]) == ("P2", "TIMEOUT", 360_000)
    assert timeout_alert(record("SNAPSHOT", "RUNNING", started=minutes(4)), NOW) is None
    slow = record("CALIBRATION", "SUCCESS", started=minutes(20), duration=timedelta(seconds=301))
    assert timeout_alert(slow, NOW).details["elapsed_ms"] == 301_000
    exact = record("CALIBRATION", "SUCCESS", started=minutes(20), duration=timedelta(minutes=5))
    assert timeout_alert(exact, NOW) is None
    # The same attempt alerted while running and once finished is one occurrence.
    finished = record("PATTERN_EXTRACTION", "RUNNING", started=minutes(6))
    assert timeout_alert(finished, NOW).dedup_id == timeout_alert(finished, NOW + minutes(1)).dedup_id


def test_drift_over_0_15_in_a_sufficient_band_is_p3_advisory() -> None:
    drifted = record("CALIBRATION", "SUCCESS", started=minutes(9), results={"drift": -0.21, "max_abs_drift": 0.21})
    alert = drift_alert(drifted)
    assert (alert.severity, alert.alarm, alert.action) == ("P3", "DRIFT", "ADVISORY_ONLY")
    assert alert.body()["action"] == "ADVISORY_ONLY" and alert.details["bands"] == [{"band": None, "drift": -0.21}]
    at_limit = record("CALIBRATION", "SUCCESS", started=minutes(9), results={"drift": 0.15, "max_abs_drift": 0.15})
    assert drift_alert(at_limit) is None
    bands = [
        {"band": "HIGH", "drift": -0.4, "sufficient": False, "n": 5},
        {"band": "MEDIUM", "drift": 0.16, "sufficient": True, "n": 40},
    ]
    by_band = drift_alert(record("CALIBRATION", "SUCCESS", started=minutes(9), results={"bands": bands}))
    assert by_band.details["bands"] == [{"band": "MEDIUM", "drift": 0.16, "n": 40}]
    failed = record("CALIBRATION", "FAILED", started=minutes(9), results={"max_abs_drift": 0.3})
    assert drift_alert(failed) is None


def test_kill_switch_changes_are_info() -> None:
    disabled = record("KILL_SWITCH_DISABLE", "SUCCESS", started=minutes(1), trigger="MANUAL", principal=ADMIN)
    alert = kill_switch_alert(disabled)
    assert (alert.severity, alert.alarm, alert.operation, alert.action) == (
        "INFO", "KILL_SWITCH_DISABLED", "KILL_SWITCH_DISABLE", "NONE"
    )
    enabled = record("KILL_SWITCH_ENABLE", "SUCCESS", started=minutes(1), trigger="MANUAL", principal=ADMIN)
    assert kill_switch_alert(enabled).alarm == "KILL_SWITCH_ENABLED"
    refused = record("KILL_SWITCH_DISABLE", "SKIPPED", started=minutes(1), trigger="MANUAL", principal=ADMIN)
    assert kill_switch_alert(refused) is None


def test_evaluate_alerts_every_failure_of_a_batch_as_ticks_in_between_would() -> None:
    failures = [record("SNAPSHOT", "FAILED", started=minutes(m)) for m in (70, 65, 62)]
    older = [record("SNAPSHOT", "SUCCESS", started=minutes(90))]
    alerts = evaluate(failures, history=older, now=NOW)
    # Oldest first: 1 in a row (P2), 2 in a row (P1), 3 in a row (P0); sorted by severity.
    assert [(a.severity, a.alarm, a.audit_id) for a in alerts] == [
        ("P0", "CONSECUTIVE_FAILURES", failures[2].audit_id),
        ("P1", "REPEATED_FAILURE", failures[1].audit_id),
        ("P2", "OPERATION_FAILURE", failures[0].audit_id),
    ]
    assert alerts[0].details["failed_audit_ids"] == [r.audit_id for r in reversed(failures)]
    one_at_a_time = [evaluate(failures[: i + 1], history=older, now=NOW)[0] for i in range(3)]
    assert {a.dedup_id for a in one_at_a_time} == {a.dedup_id for a in alerts}
    again = evaluate(failures, history=older, now=NOW + minutes(1))
    assert [a.dedup_id for a in again] == [a.dedup_id for a in alerts]


def test_every_failed_calibration_is_its_own_p0() -> None:
    failures = [record("CALIBRATION", "FAILED", started=minutes(m)) for m in (75, 70)]
    alerts = evaluate(failures, now=NOW)
    assert [(a.severity, a.alarm) for a in alerts] == [("P0", "CALIBRATION_FAILURE")] * 2
    assert {a.audit_id for a in alerts} == {r.audit_id for r in failures}


def test_evaluate_orders_by_severity() -> None:
    records = [
        record("CALIBRATION", "FAILED", started=minutes(2)),
        record("PATTERN_EXTRACTION", "RUNNING", started=minutes(8)),
        record("KILL_SWITCH_ENABLE", "SUCCESS", started=minutes(1), trigger="MANUAL", principal=ADMIN),
    ]
    alerts = evaluate(records, now=NOW)
    assert [(a.severity, a.alarm) for a in alerts] == [
        ("P0", "CALIBRATION_FAILURE"),
        ("P1", "HIGH_ERROR_RATE"),
        ("P2", "TIMEOUT"),
        ("INFO", "KILL_SWITCH_ENABLED"),
    ]
