"""Schedules for every cadence (docs/design.md#operations), built from the partitions; all start STOPPED.

Each tick targets the last partition complete at the tick (00:00 on 2026-01-01 ->
daily 2025-12-31, weekly week of Sunday 2025-12-21 on a Sunday tick, monthly
2025-12). While the kill switch is active (or a maintenance window is open) the
tick is skipped, so nothing is launched, with a SKIPPED audit record when the tick
is the daemon's; evaluating a schedule without launching ("Test schedule" in the UI,
`evaluate_tick` in tests) writes nothing. The assets check again when their run
starts; a run is SCHEDULED only when the instance shows this tick created it
(`created_by_schedule_tick`). Enable schedules only after verification, as the
runbook demands.
"""

from datetime import UTC, datetime
from typing import Any

import dagster as dg

from opx_learning.defs.location import Location
from opx_learning.defs.monitors import heartbeat
from opx_learning.defs.partitions import last_complete_key, partition_window

STOPPED = dg.DefaultScheduleStatus.STOPPED


def _partition_schedule(
    loc: Location,
    name: str,
    cron: str,
    job: Any,
    partitions_def: dg.TimeWindowPartitionsDefinition,
    operation_type: str,
    time_window: str,
) -> dg.ScheduleDefinition:
    @dg.schedule(
        name=loc.names(name),
        required_resource_keys=loc.names.required("safety"),
        cron_schedule=cron,
        job=job,
        execution_timezone="UTC",
        default_status=STOPPED,
        description=f"{operation_type} ({time_window}) of the partition that just ended; UTC cron `{cron}`.",
    )
    @heartbeat(loc.names(name), loc.settings)
    def _schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        safety = loc.names.resources(context).safety
        tick = context.scheduled_execution_time or datetime.now(UTC)
        key = last_complete_key(partitions_def, tick)
        if key is None:
            return dg.SkipReason(f"no complete partition before {tick.isoformat()}")
        window = partition_window(partitions_def, key)
        parameters = {"start_date": window.start_iso, "end_date": window.end_iso, "time_window": time_window}
        if operation_type == "SNAPSHOT":
            parameters["snapshot_type"] = time_window
        refusal = safety.schedule_gate(operation_type, parameters, context=context)
        if refusal is not None:
            return refusal
        return dg.RunRequest(run_key=f"{loc.names(name)}:{key}", partition_key=key)

    return _schedule


# (name, cron, job, cadence, operation) of every cadence; the time window is the cadence.
_CADENCES = (
    ("daily_patterns_schedule", "0 0 * * *", "daily_patterns_job", "DAILY", "PATTERN_EXTRACTION"),
    ("weekly_patterns_schedule", "0 0 * * 0", "weekly_patterns_job", "WEEKLY", "PATTERN_EXTRACTION"),
    ("monthly_calibration_schedule", "0 0 1 * *", "monthly_calibration_job", "MONTHLY", "CALIBRATION"),
    ("daily_snapshot_schedule", "0 1 * * *", "daily_snapshot_job", "DAILY", "SNAPSHOT"),
    ("weekly_snapshot_schedule", "0 1 * * 0", "weekly_snapshot_job", "WEEKLY", "SNAPSHOT"),
    ("monthly_snapshot_schedule", "0 1 1 * *", "monthly_snapshot_job", "MONTHLY", "SNAPSHOT"),
)
SCHEDULE_NAMES = tuple(row[0] for row in _CADENCES)


def build_schedules(loc: Location, jobs: dict[str, Any]) -> list[dg.ScheduleDefinition]:
    """The six cadence schedules of one location (STOPPED)."""
    return [
        _partition_schedule(loc, name, cron, jobs[job], loc.partitions.cadence[cadence], operation, cadence)
        for name, cron, job, cadence, operation in _CADENCES
    ]
