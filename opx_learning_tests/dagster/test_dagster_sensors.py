"""The audit sensor completes records of failed, canceled and killed runs as FAILED (RUN_TERMINATED) on a real instance."""

from __future__ import annotations

import socket
import subprocess
import sys
from datetime import timedelta

import dagster as dg
from dagster._core.events import EngineEventData

from opx_learning.defs.sensors import (
    HOST_TAG,
    PID_TAG,
    process_tags,
)
from opx_learning.resources.safety import AUDIT_ID_TAG
from opx_learning.safety.audit import new_record, utcnow
from opx_learning.safety.guard import Guard
from opx_learning.safety.models import (
    AuditRecord,
    AuditStatus,
    AuthorityType,
    Principal,
)
from opx_learning_tests.wiring import location, resource, sensor

ALICE = Principal("alice", AuthorityType.ON_CALL_SRE)


@dg.asset
def exploding_asset() -> int:
    """An asset whose run fails."""
    raise RuntimeError("boom")


def _running(guard: Guard, minutes_ago: float, run_id: str | None = None) -> AuditRecord:
    record = new_record(
        "PATTERN_EXTRACTION", "MANUAL", ALICE, run_id=run_id, start_time=utcnow() - timedelta(minutes=minutes_ago)
    )
    return guard.audit.append(record)


def _run(instance: dg.DagsterInstance, tags: dict[str, str] | None = None) -> dg.DagsterRun:
    """A run in the instance that started and has not finished."""
    return instance.add_run(dg.DagsterRun(job_name="daily_patterns_job", status=dg.DagsterRunStatus.STARTED, tags=tags))


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _tick(instance: dg.DagsterInstance) -> dg.SensorExecutionData:
    context = dg.build_sensor_context(instance=instance, resources={"safety": resource("safety")})
    return sensor("audit_run_terminated_sensor").evaluate_tick(context)


def test_sensor_is_registered_running_every_minute() -> None:
    sensor = location().get_sensor_def("audit_run_terminated_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.minimum_interval_seconds == 60


def test_sensor_completes_records_of_gone_runs_and_spares_live_ones(instance: dg.DagsterInstance) -> None:
    guard = resource("safety").guard()
    failed_run = dg.materialize([exploding_asset], instance=instance, raise_on_error=False)
    assert not failed_run.success
    canceled_run = _run(instance)
    instance.report_run_canceled(canceled_run)
    killed_run = _run(instance, {PID_TAG: str(_dead_pid()), HOST_TAG: socket.gethostname()})
    live_run = _run(instance)
    live_tagged_run = _run(instance, process_tags())

    gone = {
        "failed": _running(guard, 5, failed_run.run_id),
        "canceled": _running(guard, 5, canceled_run.run_id),
        "killed": _running(guard, 5, killed_run.run_id),
        "never launched": _running(guard, 15),
    }
    spared = {
        "live": _running(guard, 5, live_run.run_id),
        "live, process alive": _running(guard, 5, live_tagged_run.run_id),
        "too recent": _running(guard, 0.25, failed_run.run_id),  # younger than the 30 s grace
        "launching": _running(guard, 5),
    }
    trigger_record = _running(guard, 15)
    trigger_run = _run(instance, {AUDIT_ID_TAG: trigger_record.audit_id})  # a trigger's run not yet attached
    spared["run found by tag"] = trigger_record

    data = _tick(instance)
    assert not data.run_requests
    assert f"completed {len(gone)} orphaned audit record(s)" in data.skip_message
    for name, record in gone.items():
        stored = guard.audit.get(record.audit_id)
        assert stored.status is AuditStatus.FAILED, name
        assert stored.results["failure_reason"] == "RUN_TERMINATED", name
        assert stored.error_message.startswith("RUN_TERMINATED"), name
    for name, record in spared.items():
        assert guard.audit.get(record.audit_id).status is AuditStatus.RUNNING, name

    instance.report_run_failed(trigger_run)
    assert "completed 1 orphaned" in _tick(instance).skip_message
    assert guard.audit.get(trigger_record.audit_id).status is AuditStatus.FAILED
    assert _tick(instance).skip_message == "no orphaned RUNNING audit record"


def test_sensor_reads_the_pid_of_a_launched_run(instance: dg.DagsterInstance) -> None:
    assert isinstance(instance.run_launcher, dg.DefaultRunLauncher)
    guard = resource("safety").guard()
    dead, alive = _run(instance), _run(instance)
    instance.report_engine_event("Executing steps in process", dead, EngineEventData.in_process(_dead_pid()))
    instance.report_engine_event(
        "Executing steps in process", alive, EngineEventData.in_process(int(process_tags()[PID_TAG]))
    )
    dead_record, alive_record = _running(guard, 5, dead.run_id), _running(guard, 5, alive.run_id)
    _tick(instance)
    assert guard.audit.get(dead_record.audit_id).status is AuditStatus.FAILED
    assert guard.audit.get(alive_record.audit_id).status is AuditStatus.RUNNING
