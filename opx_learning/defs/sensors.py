"""Sensors: housekeeping of the audit trail (docs/design.md#audit-trail).

`audit_run_terminated_sensor` completes RUNNING audit records whose run is gone as
FAILED with reason RUN_TERMINATED, so a failed, canceled or killed run never leaves
its record RUNNING (the FAILED record then feeds the failure alerts). It runs
every 60 s and leaves records younger than 30 seconds alone (a trigger's run may not
exist yet), so an orphaned record is completed within about 90 seconds.

It starts RUNNING, unlike the schedules: it launches no run and does no learning
work, it only completes records that are provably orphaned, and the audit trail must
stay truthful from the first deployment on without waiting for an operator (the
runbook's "enable after verification" applies to the schedules that do work).

When is a record's run gone?

* Its run is found (by `run_id`, else as the run tagged `opx/audit_id` with the
  record's id, which is how a manual trigger's record finds its run before the run
  attaches itself) and is finished: SUCCESS, FAILURE or CANCELED. A successful run
  whose record is still RUNNING ended without completing it (e.g. its step never ran).
* Its run is found, not finished, and the process executing it is dead: the pid
  comes from the `opx/pid` + `opx/host` tags (runs executed in-process by
  `opx-learning trigger` / `demo`, checked only on that host), else from the run's
  "Executing steps ... (pid: N)" engine event when the instance uses the
  DefaultRunLauncher (its run workers are local subprocesses of the code server).
  Other launchers report a dead worker themselves when Dagster run monitoring is
  enabled (the run becomes FAILURE, which the first rule catches).
* No run is found, the record is older than 10 minutes and no API server holds it: it
  was begun by a process that died before launching its run, or by a run on another
  (e.g. ephemeral) instance. This assumes one Dagster instance per audit store. A REST
  request waiting in an API server's queue has no run yet; the server heartbeats it in
  the instance's key-value store (`opx/api-request/<audit id>`, every 30 s) until its
  worker ends, and a heartbeat younger than 2 minutes keeps the record alive however
  long it waits.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterable
from datetime import datetime, timedelta

import dagster as dg

from opx_learning.core.windows import iso, to_utc
from opx_learning.defs.location import Location
from opx_learning.defs.monitors import heartbeat
from opx_learning.resources.safety import AUDIT_ID_TAG, SafetyResource
from opx_learning.safety.audit import utcnow
from opx_learning.safety.guard import Guard
from opx_learning.safety.models import AuditRecord

PID_TAG = "opx/pid"
HOST_TAG = "opx/host"
STALE_AFTER = timedelta(seconds=30)
MISSING_RUN_AFTER = timedelta(minutes=10)
REQUEST_KEY_PREFIX = "opx/api-request/"
HEARTBEAT_EVERY = timedelta(seconds=30)
HEARTBEAT_STALE_AFTER = timedelta(seconds=30)


def process_tags() -> dict[str, str]:
    """Tags naming the current process, for runs executed in-process (read by the sensor)."""
    return {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (a zombie counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return True


def heartbeat_requests(
    instance: dg.DagsterInstance,
    held: Iterable[str],
    released: Iterable[str] = (),
    *,
    now: datetime | None = None,
) -> None:
    """Record that this process holds the REST requests `held` (queued or starting) and no longer holds `released`.

    Args:
        instance: the Dagster instance the audit sensor reads.
        held: audit ids of requests still waiting for, or running in, a worker of this server.
        released: audit ids whose worker has ended (their heartbeat is cleared).
        now: heartbeat time (default: now).
    """
    beat = json.dumps({"heartbeat": iso(now or utcnow()), **process_tags()})
    # One key per call: Dagster's multi-key upsert skips new keys when any key already exists.
    for audit_id in held:
        instance.run_storage.set_cursor_values({REQUEST_KEY_PREFIX + audit_id: beat})
    for audit_id in released:
        instance.run_storage.set_cursor_values({REQUEST_KEY_PREFIX + audit_id: ""})


def request_heartbeat(instance: dg.DagsterInstance, audit_id: str) -> datetime | None:
    """When an API server last said it holds this request (None: never, or released)."""
    key = REQUEST_KEY_PREFIX + audit_id
    value = instance.run_storage.get_cursor_values({key}).get(key)
    if not value:
        return None
    try:
        return to_utc(json.loads(value)["heartbeat"], "heartbeat")
    except (ValueError, KeyError, TypeError):
        return None


def find_run(instance: dg.DagsterInstance, record: AuditRecord) -> dg.DagsterRun | None:
    """The record's run: by `run_id`, else the newest run tagged with the record's audit id."""
    if record.run_id:
        return instance.get_run_by_id(record.run_id)
    records = instance.get_run_records(dg.RunsFilter(tags={AUDIT_ID_TAG: record.audit_id}), limit=1)
    return records[0].dagster_run if records else None


def _worker_pid(instance: dg.DagsterInstance, run: dg.DagsterRun) -> int | None:
    if run.tags.get(PID_TAG) and run.tags.get(HOST_TAG):
        return int(run.tags[PID_TAG]) if run.tags[HOST_TAG] == socket.gethostname() else None
    if not isinstance(instance.run_launcher, dg.DefaultRunLauncher):
        return None
    for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        event = entry.dagster_event
        data = event.engine_event_data if event is not None else None
        pid = data.metadata.get("pid") if data is not None else None
        if pid is not None:
            return int(pid.value)
    return None


def run_is_alive(
    instance: dg.DagsterInstance,
    record: AuditRecord,
    *,
    now: datetime,
    missing_after: timedelta = MISSING_RUN_AFTER,
) -> bool:
    """Whether the run of a RUNNING record may still complete it (rules in the module docstring)."""
    run = find_run(instance, record)
    if run is None:
        if now - record.start_time < missing_after:
            return True
        beat = request_heartbeat(instance, record.audit_id)
        return beat is not None and now - beat < HEARTBEAT_STALE_AFTER
    if run.is_finished:
        return False
    pid = _worker_pid(instance, run)
    return pid is None or pid_alive(pid)


def complete_terminated(
    instance: dg.DagsterInstance,
    guard: Guard,
    *,
    now: datetime | None = None,
    older_than: timedelta = STALE_AFTER,
    missing_after: timedelta = MISSING_RUN_AFTER,
) -> list[AuditRecord]:
    """Complete the RUNNING records whose run is gone as FAILED / RUN_TERMINATED; return them."""
    at = now or utcnow()

    def alive(record: AuditRecord) -> bool:
        return run_is_alive(instance, record, now=at, missing_after=missing_after)

    return guard.audit.complete_stale(alive, older_than=older_than, now=at)


def build_sensors(loc: Location) -> list[dg.SensorDefinition]:
    """The audit sensor of one location."""

    @dg.sensor(
        name=loc.names("audit_run_terminated_sensor"),
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        required_resource_keys=loc.names.required("safety"),
        description="Completes RUNNING audit records whose run failed, was canceled or died as FAILED (RUN_TERMINATED).",
    )
    @heartbeat(loc.names("audit_run_terminated_sensor"), loc.settings)
    def audit_run_terminated_sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        """Complete orphaned RUNNING audit records; the tick never launches a run."""
        return _complete_orphans(context, loc.names.resources(context).safety)

    return [audit_run_terminated_sensor]


def _complete_orphans(context: dg.SensorEvaluationContext, safety: SafetyResource) -> dg.SkipReason:
    completed = complete_terminated(context.instance, safety.guard())
    for record in completed:
        context.log.warning(f"audit {record.audit_id} (run {record.run_id or 'none'}) completed FAILED: RUN_TERMINATED")
    if not completed:
        return dg.SkipReason("no orphaned RUNNING audit record")
    ids = ", ".join(record.audit_id for record in completed)
    return dg.SkipReason(f"completed {len(completed)} orphaned audit record(s) as FAILED (RUN_TERMINATED): {ids}")
