"""The alert sensor on a real Dagster instance, over records written by the real guard."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg

from opx_learning.backends import guard_for
from opx_learning.config import get_settings
from opx_learning.defs.alert_sensors import build_alert_sensors
from opx_learning.defs.location import Location
from opx_learning.safety.models import SYSTEM, Principal
from opx_learning_tests.wiring import resource, sensor, settings


def _tick(instance: dg.DagsterInstance, cursor: str | None) -> tuple[str, str]:
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"safety": resource("safety"), "alerts": resource("alerts")}
    )
    result = sensor("operations_alert_sensor").evaluate_tick(context)
    skip = result.skip_message or ""
    return result.cursor, skip


def _alerts(home: Path) -> list[dict]:
    path = home / "alerts.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_failed_calibration_pages_p0_once_across_re_evaluations(opx_home: Path) -> None:
    guard = guard_for(get_settings())
    ok = guard.begin("PATTERN_EXTRACTION", "SCHEDULED", SYSTEM, {"start_date": "2026-03-01", "end_date": "2026-03-02"})
    guard.succeed(ok, {"total_incidents": 12})
    attempt = guard.begin("CALIBRATION", "SCHEDULED", SYSTEM, {"start_date": "2026-02-01", "end_date": "2026-03-01"})
    guard.fail(attempt, "12 outcomes with a confidence, 30 required", reason="INSUFFICIENT_DATA")
    with dg.instance_for_test() as instance:
        cursor, message = _tick(instance, None)
        # The tick's reason says what it did (the UI shows it beside Dagster's fixed "0 runs requested").
        assert message.startswith(
            "published 2 alert(s): P0 CALIBRATION_FAILURE CALIBRATION, P1 HIGH_ERROR_RATE CALIBRATION; "
        )
        alerts = _alerts(opx_home)
        assert [(a["severity"], a["alarm"]) for a in alerts] == [("P0", "CALIBRATION_FAILURE"), ("P1", "HIGH_ERROR_RATE")]
        assert alerts[0]["audit_id"] == attempt.audit_id
        assert alerts[0]["details"]["failure_reason"] == "INSUFFICIENT_DATA"
        # Re-evaluating the same tick (same cursor: the file dedups) and the next tick add nothing.
        _tick(instance, None)
        cursor, later = _tick(instance, cursor)
        assert later.startswith("published no alert; ")
        assert len(_alerts(opx_home)) == 2
        # A second failure is a new occurrence.
        second = guard.begin("CALIBRATION", "MANUAL", Principal("alice"))
        guard.fail(second, RuntimeError("boom"))
        _tick(instance, cursor)
        new = [a for a in _alerts(opx_home)[2:] if a["alarm"] == "CALIBRATION_FAILURE"]
        assert [(a["severity"], a["audit_id"], a["details"]["consecutive_failures"]) for a in new] == [
            ("P0", second.audit_id, 2)
        ]


def test_running_record_is_tracked_until_it_completes(opx_home: Path) -> None:
    guard = guard_for(get_settings())
    attempt = guard.begin("SNAPSHOT", "SCHEDULED", SYSTEM, {"snapshot_type": "DAILY"})
    with dg.instance_for_test() as instance:
        cursor, _ = _tick(instance, None)
        assert json.loads(cursor)["running"] == [attempt.audit_id]
        guard.fail(attempt, "disk full")
        cursor, _ = _tick(instance, cursor)
        assert json.loads(cursor)["running"] == []
    assert [(a["severity"], a["alarm"]) for a in _alerts(opx_home)] == [
        ("P1", "HIGH_ERROR_RATE"), ("P2", "OPERATION_FAILURE")
    ]


def test_sensor_starts_running_and_loads_in_definitions() -> None:
    assert len(build_alert_sensors(Location.build(settings()))) == 1
    assert sensor("operations_alert_sensor").default_status is dg.DefaultSensorStatus.RUNNING
    assert sensor("operations_alert_sensor").minimum_interval_seconds == 60
    defs = dg.Definitions(sensors=build_alert_sensors(Location.build(settings())), resources={"safety": resource("safety"), "alerts": resource("alerts")})
    assert defs.resolve_sensor_def("operations_alert_sensor") is not None
