"""REST requests waiting in an API server's queue are not reaped while the server heartbeats them; one reaped anyway is reported."""

from __future__ import annotations

import json
import os
import time
from datetime import timedelta

import dagster as dg

from opx_learning.api import worker
from opx_learning.api.runner import BackgroundRuns
from opx_learning.app.manual import ManualPlan
from opx_learning.backends import guard_for
from opx_learning.config import get_settings
from opx_learning.core.windows import Window
from opx_learning.defs.sensors import (
    HEARTBEAT_STALE_AFTER,
    MISSING_RUN_AFTER,
    heartbeat_requests,
    request_heartbeat,
)
from opx_learning.safety.audit import new_record, utcnow
from opx_learning.safety.guard import Guard
from opx_learning.safety.models import (
    AuditRecord,
    AuditStatus,
    AuthorityType,
    Principal,
)
from opx_learning_tests.wiring import resource, sensor

ALICE = Principal("alice", AuthorityType.ON_CALL_SRE)
WINDOW = Window.parse("2026-01-05", "2026-01-06")
PARAMETERS = {"start_date": WINDOW.start_iso, "end_date": WINDOW.end_iso, "time_window": "DAILY"}
# An asset that does not exist: its worker fails fast, before any run adopts the record.
PLAN = ManualPlan("PATTERN_EXTRACTION", WINDOW, "DAILY", ("no_such_asset",), ("2026-01-05",), PARAMETERS)


def _queued(guard: Guard, minutes_ago: float) -> AuditRecord:
    """A manual request's RUNNING record begun `minutes_ago` (the clock of the sensor is the record's age)."""
    start = utcnow() - timedelta(minutes=minutes_ago)
    return guard.audit.append(new_record("PATTERN_EXTRACTION", "MANUAL", ALICE, parameters=PARAMETERS, start_time=start))


def _tick(instance: dg.DagsterInstance) -> str:
    context = dg.build_sensor_context(instance=instance, resources={"safety": resource("safety")})
    return sensor("audit_run_terminated_sensor").evaluate_tick(context).skip_message or ""


def _status(guard: Guard, record: AuditRecord) -> AuditStatus:
    stored = guard.audit.get(record.audit_id)
    assert stored is not None
    return stored.status


def test_a_fresh_heartbeat_keeps_an_old_queued_request_alive(instance: dg.DagsterInstance) -> None:
    guard = resource("safety").guard()
    waited = MISSING_RUN_AFTER + timedelta(minutes=5)
    held = _queued(guard, waited.total_seconds() / 60)
    stale = _queued(guard, waited.total_seconds() / 60)
    released = _queued(guard, waited.total_seconds() / 60)
    orphan = _queued(guard, waited.total_seconds() / 60)
    now = utcnow()
    heartbeat_requests(instance, [held.audit_id, released.audit_id], now=now)
    heartbeat_requests(instance, [stale.audit_id], now=now - HEARTBEAT_STALE_AFTER - timedelta(seconds=1))
    heartbeat_requests(instance, [], [released.audit_id])
    assert request_heartbeat(instance, held.audit_id) == now
    assert request_heartbeat(instance, released.audit_id) is None

    assert "completed 3 orphaned" in _tick(instance)
    assert _status(guard, held) is AuditStatus.RUNNING
    for record in (stale, released, orphan):
        assert _status(guard, record) is AuditStatus.FAILED
    # The same request, its server gone (no heartbeat for longer than the limit), is reaped on a later tick.
    heartbeat_requests(instance, [held.audit_id], now=now - HEARTBEAT_STALE_AFTER)
    assert "completed 1 orphaned" in _tick(instance)
    assert _status(guard, held) is AuditStatus.FAILED


def test_the_api_runner_heartbeats_what_it_holds_and_releases_it(instance: dg.DagsterInstance) -> None:
    settings = get_settings()
    guard = guard_for(settings)
    first = _queued(guard, 0)
    waiting = _queued(guard, (MISSING_RUN_AFTER + timedelta(minutes=5)).total_seconds() / 60)
    runs = BackgroundRuns(settings, max_runs=1, environ=os.environ)
    try:
        runs.submit(PLAN, first.audit_id, "alice", "no-token")
        runs.submit(PLAN, waiting.audit_id, "alice", "no-token")
        deadline = time.monotonic() + 10
        while request_heartbeat(instance, waiting.audit_id) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert runs.counts()["queued"] + runs.counts()["running"] == 2
        assert request_heartbeat(instance, waiting.audit_id) is not None
        # Fifteen minutes in the queue, but its server is alive: the sensor leaves it alone.
        _tick(instance)
        assert _status(guard, waiting) is AuditStatus.RUNNING
        deadline = time.monotonic() + 90
        while runs.counts() != {"running": 0, "queued": 0} and time.monotonic() < deadline:
            time.sleep(0.2)
        deadline = time.monotonic() + 10
        while request_heartbeat(instance, waiting.audit_id) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert request_heartbeat(instance, first.audit_id) is None
        assert request_heartbeat(instance, waiting.audit_id) is None
        # Both ran (and failed on the missing asset) in their workers, not in the sensor.
        for record in (first, waiting):
            stored = guard.audit.get(record.audit_id)
            assert stored is not None and stored.status is AuditStatus.FAILED
            assert "RUN_TERMINATED" not in (stored.error_message or ""), stored.error_message
    finally:
        runs.stop()


def test_a_request_reaped_while_queued_is_reported_not_dropped(instance: dg.DagsterInstance) -> None:
    settings = get_settings()
    guard = guard_for(settings)
    record = _queued(guard, 15)
    assert "completed 1 orphaned" in _tick(instance)  # no heartbeat: reaped as RUN_TERMINATED

    runs = BackgroundRuns(settings, max_runs=1, environ=os.environ)
    try:
        runs.submit(PLAN, record.audit_id, "alice", "no-token")
        deadline = time.monotonic() + 90
        while runs.counts() != {"running": 0, "queued": 0} and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        runs.stop()
    log = (settings.home / "api" / "runs" / f"{record.audit_id.replace('#', '_')}.log").read_text()
    assert f"the REST request {record.audit_id} was not run: its audit record is FAILED (RUN_TERMINATED" in log
    alerts = [json.loads(line) for line in settings.alerts_file.read_text().splitlines()]
    reported = [alert for alert in alerts if alert["alarm"] == worker.REQUEST_NOT_RUN]
    assert len(reported) == 1 and reported[0]["severity"] == "P2"
    assert reported[0]["audit_id"] == record.audit_id
    # Nothing was launched for it and the record keeps the sensor's verdict.
    assert instance.get_runs_count() == 0
    assert _status(guard, record) is AuditStatus.FAILED


def test_the_worker_refuses_a_completed_record(instance: dg.DagsterInstance) -> None:
    guard = guard_for(get_settings())
    record = _queued(guard, 0)
    guard.audit.complete(record.audit_id, AuditStatus.FAILED, error_message="closed elsewhere")
    payload = json.dumps({"plan": PLAN.to_dict(), "audit_id": record.audit_id, "principal": "alice"})
    assert worker.main([payload]) == worker.NOT_RUN_EXIT
    assert instance.get_runs_count() == 0
