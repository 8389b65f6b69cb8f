"""Schedules for every cadence of SPEC §0, built from the partitions; all start STOPPED.

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

from opx_learning.defs import jobs
from opx_learning.defs.monitors import heartbeat
from opx_learning.defs.partitions import (
    daily_partitions,
    last_complete_key,
    monthly_partitions,
    partition_window,
    weekly_partitions,
)
from opx_learning.resources.safety import SafetyResource

STOPPED = dg.DefaultScheduleStatus.STOPPED


def _partition_schedule(
    name: str,
    cron: str,
    job: Any,
    partitions_def: dg.TimeWindowPartitionsDefinition,
    operation_type: str,
    time_window: str,
) -> dg.ScheduleDefinition:
    @dg.schedule(
        name=name,
        cron_schedule=cron,
        job=job,
        execution_timezone="UTC",
        default_status=STOPPED,
        description=f"{operation_type} ({time_window}) of the partition that just ended; UTC cron `{cron}`.",
    )
    @heartbeat(name)
    def _schedule(context: dg.ScheduleEvaluationContext, safety: SafetyResource) -> dg.RunRequest | dg.SkipReason:
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
        return dg.RunRequest(run_key=f"{name}:{key}", partition_key=key)

    return _schedule


daily_patterns_schedule = _partition_schedule(
    "daily_patterns_schedule", "0 0 * * *", jobs.daily_patterns_job, daily_partitions, "PATTERN_EXTRACTION", "DAILY"
)
weekly_patterns_schedule = _partition_schedule(
    "weekly_patterns_schedule", "0 0 * * 0", jobs.weekly_patterns_job, weekly_partitions, "PATTERN_EXTRACTION", "WEEKLY"
)
monthly_calibration_schedule = _partition_schedule(
    "monthly_calibration_schedule",
    "0 0 1 * *",
    jobs.monthly_calibration_job,
    monthly_partitions,
    "CALIBRATION",
    "MONTHLY",
)
daily_snapshot_schedule = _partition_schedule(
    "daily_snapshot_schedule", "0 1 * * *", jobs.daily_snapshot_job, daily_partitions, "SNAPSHOT", "DAILY"
)
weekly_snapshot_schedule = _partition_schedule(
    "weekly_snapshot_schedule", "0 1 * * 0", jobs.weekly_snapshot_job, weekly_partitions, "SNAPSHOT", "WEEKLY"
)
monthly_snapshot_schedule = _partition_schedule(
    "monthly_snapshot_schedule", "0 1 1 * *", jobs.monthly_snapshot_job, monthly_partitions, "SNAPSHOT", "MONTHLY"
)

SCHEDULES = [
    daily_patterns_schedule,
    weekly_patterns_schedule,
    monthly_calibration_schedule,
    daily_snapshot_schedule,
    weekly_snapshot_schedule,
    monthly_snapshot_schedule,
]
