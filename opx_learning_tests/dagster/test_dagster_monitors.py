"""Monitoring of the monitors: heartbeats from real ticks, the watchdog sensor, its P1s and `status`."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
from click.testing import CliRunner
from dagster._core.remote_origin import (
    RegisteredCodeLocationOrigin,
    RemoteInstigatorOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.scheduler.instigation import (
    InstigatorState,
    InstigatorStatus,
    InstigatorType,
    ScheduleInstigatorData,
    SensorInstigatorData,
)

from opx_learning.alerts.monitor import AlertCursor
from opx_learning.alerts.publishers import LocalAlertPublisher
from opx_learning.backends import guard_for
from opx_learning.cli.main import cli
from opx_learning.config import get_settings
from opx_learning.defs.monitors import (
    monitors_report,
    raise_stale_alerts,
    read_heartbeats,
    record_heartbeat,
)
from opx_learning.resources.safety import SafetyResource
from opx_learning.safety.audit import utcnow
from opx_learning.safety.models import SYSTEM
from opx_learning_tests.dagster.conftest import daemon_tick
from opx_learning_tests.wiring import location, resource, settings


def _resources() -> dict:
    return {"safety": resource("safety"), "alerts": resource("alerts")}


ALERT_SENSOR, HOUSEKEEPING, WATCHDOG = "operations_alert_sensor", "audit_run_terminated_sensor", "monitors_watchdog_sensor"


def _sensor_tick(instance: dg.DagsterInstance, name: str, cursor: str | None = None) -> dg.SensorExecutionData:
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources=_resources(), repository_def=location().get_repository_def()
    )
    return location().resolve_sensor_def(name).evaluate_tick(context)


def _stale_alerts() -> list[dict]:
    return [a for a in LocalAlertPublisher(get_settings().alerts_file).read() if a["alarm"] == "MONITOR_STALE"]


def _state(instance: dg.DagsterInstance, name: str, kind: InstigatorType, status: InstigatorStatus,
            data: SensorInstigatorData | ScheduleInstigatorData) -> None:
    """Store the instigator state the UI's start / stop buttons store."""
    repository = RemoteRepositoryOrigin(RegisteredCodeLocationOrigin("opx_learning"), "__repository__")
    instance.add_instigator_state(InstigatorState(RemoteInstigatorOrigin(repository, name), kind, status, data))


def test_real_sensor_ticks_leave_heartbeats(instance: dg.DagsterInstance) -> None:
    before = utcnow()
    housekeeping = _sensor_tick(instance, HOUSEKEEPING)
    alerting = _sensor_tick(instance, ALERT_SENSOR)
    after = utcnow()
    beats = read_heartbeats(instance, [HOUSEKEEPING, ALERT_SENSOR, WATCHDOG])
    assert set(beats) == {HOUSEKEEPING, ALERT_SENSOR}
    for name, data in ((HOUSEKEEPING, housekeeping), (ALERT_SENSOR, alerting)):
        beat = beats[name]
        assert (beat.kind, beat.ok, beat.result) == ("sensor", True, data.skip_message)
        assert before <= beat.tick_time <= after and beat.last_ok == beat.tick_time == beat.first_tick
    # The alert sensor's heartbeat carries its cursor's audit position (what the lag is measured from).
    assert beats[ALERT_SENSOR].audit_cursor == AlertCursor.parse(alerting.cursor, after).since
    assert beats[HOUSEKEEPING].audit_cursor is None
    # A second tick keeps the first tick time and moves the last one.
    _sensor_tick(instance, HOUSEKEEPING)
    again = read_heartbeats(instance, [HOUSEKEEPING])[HOUSEKEEPING]
    assert again.first_tick == beats[HOUSEKEEPING].first_tick and again.tick_time >= beats[HOUSEKEEPING].tick_time


def test_schedule_daemon_ticks_leave_heartbeats_and_dry_runs_do_not(instance: dg.DagsterInstance) -> None:
    schedule = location().resolve_schedule_def("daily_patterns_schedule")
    at = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
    repository = location().get_repository_def()
    with dg.build_schedule_context(instance=instance, scheduled_execution_time=at, resources=_resources(),
                                   repository_def=repository) as context:
        assert schedule.evaluate_tick(context).run_requests
    assert read_heartbeats(instance, [schedule.name]) == {}
    tick = daemon_tick(instance, schedule.name, at.timestamp())
    with dg.ScheduleEvaluationContext(
        instance.get_ref(), at, [repository.name, schedule.name, str(tick)], repository.name, schedule.name,
        resources=_resources(), repository_def=repository,
    ) as context:
        data = schedule.evaluate_tick(context)
    assert [r.partition_key for r in data.run_requests] == ["2025-12-31"]
    beat = read_heartbeats(instance, [schedule.name])[schedule.name]
    assert (beat.kind, beat.tick_time, beat.ok, beat.result) == ("schedule", at, True, "1 run request(s)")


def test_watchdog_pages_once_for_a_stale_sensor_and_never_for_a_fresh_or_stopped_one(
    instance: dg.DagsterInstance,
) -> None:
    now = utcnow()
    record_heartbeat(instance, HOUSEKEEPING, "sensor", at=now - timedelta(minutes=6))
    record_heartbeat(instance, ALERT_SENSOR, "sensor", at=now - timedelta(seconds=30))
    first = _sensor_tick(instance, WATCHDOG)
    assert "1 stale" in first.skip_message and "1 alert(s) published" in first.skip_message
    [alert] = _stale_alerts()
    assert (alert["severity"], alert["operation"]) == ("P1", HOUSEKEEPING)
    assert alert["details"]["reason"].startswith("has not ticked for 6.")
    # Re-evaluating pages nothing new: one alert per stale episode.
    assert "0 alert(s) published" in _sensor_tick(instance, WATCHDOG).skip_message
    assert len(_stale_alerts()) == 1
    # Stopped by an operator: not watched, however old its heartbeat.
    _state(instance, ALERT_SENSOR, InstigatorType.SENSOR, InstigatorStatus.STOPPED, SensorInstigatorData())
    record_heartbeat(instance, ALERT_SENSOR, "sensor", at=now - timedelta(hours=2))
    # The stale sensor ticks again, then stops ticking: a new episode, a second P1.
    record_heartbeat(instance, HOUSEKEEPING, "sensor", at=now)
    later = now + timedelta(minutes=30)
    rows = {row["name"]: row for row in monitors_report(later, settings=settings(), instance=instance)}
    assert rows[ALERT_SENSOR]["status"] == "STOPPED" and rows[ALERT_SENSOR]["stale"] is False
    publisher = LocalAlertPublisher(get_settings().alerts_file)
    assert [a.operation for a in raise_stale_alerts(instance, publisher, [rows[HOUSEKEEPING]], later)] == [HOUSEKEEPING]
    assert [a["operation"] for a in _stale_alerts()] == [HOUSEKEEPING, HOUSEKEEPING]
    assert raise_stale_alerts(instance, publisher, [rows[HOUSEKEEPING]], later) == []


def test_sensor_fresh_within_five_minutes_and_restart_gives_grace(instance: dg.DagsterInstance) -> None:
    t0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    record_heartbeat(instance, HOUSEKEEPING, "sensor", at=t0)
    record_heartbeat(instance, ALERT_SENSOR, "sensor", at=t0)

    def row(now: datetime) -> dict:
        return {r["name"]: r for r in monitors_report(now, settings=settings(), instance=instance)}[HOUSEKEEPING]

    assert row(t0 + timedelta(minutes=5))["stale"] is False
    stale = row(t0 + timedelta(minutes=5, seconds=1))
    assert stale["stale"] is True and stale["age_seconds"] == 301
    # A failed evaluation is a tick, not a successful one: still stale.
    record_heartbeat(instance, HOUSEKEEPING, "sensor", at=t0 + timedelta(minutes=6), ok=False, error="boom")
    failing = row(t0 + timedelta(minutes=7))
    assert failing["stale"] is True and failing["outcome"] == "error: boom" and failing["last_ok"].startswith("2026-03-02T12:00:00")
    # Started again by an operator a minute ago: watched from its start.
    start = (t0 + timedelta(minutes=6)).timestamp()
    _state(instance, HOUSEKEEPING, InstigatorType.SENSOR, InstigatorStatus.RUNNING,
           SensorInstigatorData(last_sensor_start_timestamp=start))
    assert row(t0 + timedelta(minutes=7))["stale"] is False
    assert row(t0 + timedelta(minutes=11, seconds=1))["stale"] is True


def test_watchdog_pages_when_the_alert_cursor_lags_the_audit_trail(instance: dg.DagsterInstance) -> None:
    now = utcnow()
    guard = guard_for(get_settings())
    attempt = guard.begin("SNAPSHOT", "SCHEDULED", SYSTEM, {"snapshot_type": "DAILY"})
    guard.succeed(attempt, {"snapshots": 1})
    changed = guard.audit.get(attempt.audit_id).end_time
    # The alert sensor still ticks, but its cursor stays 12 minutes back (e.g. deliveries failing).
    cursor = AlertCursor(changed - timedelta(minutes=12)).serialize()
    record_heartbeat(instance, ALERT_SENSOR, "sensor", at=now, cursor=cursor)
    record_heartbeat(instance, HOUSEKEEPING, "sensor", at=now)
    message = _sensor_tick(instance, WATCHDOG).skip_message
    assert "1 alert(s) published" in message, message
    [alert] = _stale_alerts()
    assert alert["operation"] == ALERT_SENSOR and "lags the audit trail" in alert["details"]["reason"]
    assert alert["details"]["cursor_lag_seconds"] == 720
    # Nine minutes behind is within the limit.
    record_heartbeat(instance, ALERT_SENSOR, "sensor", at=now, cursor=AlertCursor(changed - timedelta(minutes=9)).serialize())
    row = {r["name"]: r for r in monitors_report(now, settings=settings(), instance=instance)}[ALERT_SENSOR]
    assert (row["stale"], row["cursor_lag_seconds"]) == (False, 540)


def test_running_schedule_that_missed_its_cron_time_is_stale(instance: dg.DagsterInstance) -> None:
    name = "daily_patterns_schedule"
    started = datetime(2026, 3, 1, 12, 0, tzinfo=UTC).timestamp()
    _state(instance, name, InstigatorType.SCHEDULE, InstigatorStatus.RUNNING,
           ScheduleInstigatorData("0 0 * * *", start_timestamp=started))

    def row(now: datetime) -> dict:
        return {r["name"]: r for r in monitors_report(now, settings=settings(), instance=instance)}[name]

    # Started at noon: the next cron time is 2026-03-02 00:00, missed only 5 minutes after it.
    assert row(datetime(2026, 3, 2, 0, 5, tzinfo=UTC))["stale"] is False
    missed = row(datetime(2026, 3, 2, 0, 5, 1, tzinfo=UTC))
    assert missed["stale"] is True and missed["expected_tick"] == "2026-03-02T00:00:00.000Z"
    record_heartbeat(instance, name, "schedule", at=datetime(2026, 3, 2, 0, 0, tzinfo=UTC))
    assert row(datetime(2026, 3, 2, 18, 0, tzinfo=UTC))["stale"] is False
    # Other schedules are STOPPED (their default): never stale.
    assert {r["stale"] for r in monitors_report(datetime(2026, 3, 9, tzinfo=UTC), settings=settings(), instance=instance)
            if r["kind"] == "schedule" and r["name"] != name} == {False}


def test_alert_sensor_watches_the_watchdog(instance: dg.DagsterInstance) -> None:
    record_heartbeat(instance, WATCHDOG, "sensor", at=utcnow() - timedelta(minutes=7))
    message = _sensor_tick(instance, ALERT_SENSOR).skip_message
    assert "monitors_watchdog_sensor is stale" in message
    assert [(a["severity"], a["operation"]) for a in _stale_alerts()] == [("P1", WATCHDOG)]
    _sensor_tick(instance, ALERT_SENSOR)
    assert len(_stale_alerts()) == 1


def test_nothing_is_stale_before_anything_ticked(instance: dg.DagsterInstance) -> None:
    rows = monitors_report(utcnow() + timedelta(days=1), settings=settings(), instance=instance)
    assert {r["name"] for r in rows if r["status"] == "RUNNING"} == {HOUSEKEEPING, ALERT_SENSOR, WATCHDOG}
    assert not any(r["stale"] for r in rows)


def test_status_shows_each_sensors_last_tick(instance: dg.DagsterInstance, dagster_home: Path) -> None:
    _sensor_tick(instance, ALERT_SENSOR)
    record_heartbeat(instance, HOUSEKEEPING, "sensor", at=utcnow() - timedelta(minutes=8))
    result = CliRunner().invoke(cli, ["status", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["monitors_source"] == f"Dagster instance {dagster_home}"
    rows = {row["name"]: row for row in report["monitors"]}
    # The automation condition sensor runs no function of ours: Dagster records its ticks, it has no heartbeat.
    watched = {s.name for s in location().sensors if not isinstance(s, dg.AutomationConditionSensorDefinition)}
    assert set(rows) == watched | {s.name for s in location().schedules}
    assert rows[ALERT_SENSOR]["stale"] is False and 0 <= rows[ALERT_SENSOR]["age_seconds"] < 60
    assert rows[HOUSEKEEPING]["stale"] is True and 480 <= rows[HOUSEKEEPING]["age_seconds"] < 540
    assert rows[WATCHDOG]["last_tick"] is None
    text = CliRunner().invoke(cli, ["status"]).output.splitlines()
    section = text[next(i for i, line in enumerate(text) if line.startswith("7. Sensors")):]

    def line(name: str) -> str:
        return next(row for row in section if row.strip().startswith(name + " "))

    assert rows[ALERT_SENSOR]["last_tick"] in line(ALERT_SENSOR) and line(ALERT_SENSOR).endswith("ok")
    assert "! STALE: has not ticked for 8." in line(HOUSEKEEPING)
    assert "stopped (not watched)" in line("daily_patterns_schedule")


def test_expected_tick_is_dagsters_cron_arithmetic() -> None:
    from dagster._utils.schedules import schedule_execution_time_iterator

    from opx_learning.alerts.heartbeats import STALE_AFTER
    from opx_learning.defs.monitors import expected_tick

    def dagsters(cron: str, timezone: str | None, now: datetime) -> datetime:
        limit = now - STALE_AFTER
        ticks = schedule_execution_time_iterator(limit.timestamp(), cron, timezone, ascending=False)
        return next(tick for tick in ticks if tick < limit).astimezone(UTC)

    crons = ["0 0 * * *", "0 0 * * 0", "0 0 1 * *", "0 1 * * *", "0 9 * * *", "*/15 * * * *", "30 2 * * 1-5"]
    start = datetime(2025, 3, 8, tzinfo=UTC)  # DST changes in Europe and America within the hours below
    for hours in range(0, 24 * 60, 7):
        for minute in (0, 5, 6):  # 5 minutes after a tick exactly, and just past it
            now = start + timedelta(hours=hours, minutes=minute)
            for cron in crons:
                for timezone in (None, "UTC", "Europe/Berlin", "America/New_York"):
                    assert expected_tick(cron, timezone, now) == dagsters(cron, timezone, now), (cron, timezone, now)


def test_heartbeat_decorator_records_every_outcome_and_keeps_the_function_as_dagster_calls_it(
    instance: dg.DagsterInstance,
) -> None:
    from opx_learning.defs.monitors import heartbeat, with_heartbeats

    @dg.sensor(name="yielding_sensor", minimum_interval_seconds=60)
    @heartbeat("yielding_sensor")
    def yielding_sensor(context: dg.SensorEvaluationContext, safety: SafetyResource):
        assert isinstance(safety, SafetyResource)  # resources are still injected by their annotation
        context.update_cursor("c-2")
        yield dg.SkipReason("nothing new")

    @dg.sensor(name="failing_sensor", minimum_interval_seconds=60)
    @heartbeat("failing_sensor")
    def failing_sensor(context: dg.SensorEvaluationContext) -> None:
        raise RuntimeError("boom")

    def tick(sensor: dg.SensorDefinition) -> dg.SensorExecutionData:
        return sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor="c-1", resources=_resources()))

    assert tick(yielding_sensor).skip_message == "nothing new"
    with pytest.raises(Exception, match="boom"):
        tick(failing_sensor)
    beats = read_heartbeats(instance, ["yielding_sensor", "failing_sensor"])
    assert (beats["yielding_sensor"].ok, beats["yielding_sensor"].result, beats["yielding_sensor"].cursor) == (
        True, "nothing new", "c-2")
    assert (beats["failing_sensor"].ok, beats["failing_sensor"].error) == (False, "RuntimeError: boom")

    @dg.sensor(name="silent_sensor")
    def silent_sensor(context: dg.SensorEvaluationContext) -> None:
        return None

    with_heartbeats(dg.Definitions(sensors=[yielding_sensor, failing_sensor]))
    with pytest.raises(ValueError, match="without heartbeats .*: silent_sensor"):
        with_heartbeats(dg.Definitions(sensors=[yielding_sensor, silent_sensor]))
    defs = location()
    assert with_heartbeats(defs) is defs  # every sensor and schedule of the code location carries it
