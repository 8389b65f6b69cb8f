"""What the learning assets of every domain share: backfill and freshness policies, asset options, run parameters.

Daily-cadence and weekly assets use single-run backfills (`SINGLE_RUN`: a range is one
run that computes each partition in one pass and stores one file per partition);
calibration and drift are one run per month (`PER_PARTITION`), so one month with too
few outcomes fails alone.

Freshness policies follow the runbook: a scheduled run starting at 00:00 (snapshots
01:00) must have materialized within the expected duration (daily patterns 2 min,
weekly 5 min, calibration 10 min; snapshots 1 / 2 / 5 min). The custom assets have
no cadence, hence no freshness policy.
"""

from datetime import timedelta
from typing import Any

import dagster as dg

from opx_learning.core.windows import Window
from opx_learning.defs import beta
from opx_learning.defs.location import IO_MANAGER, Names
from opx_learning.defs.partitions import to_window

SINGLE_RUN = dg.BackfillPolicy.single_run()
PER_PARTITION = dg.BackfillPolicy.multi_run(1)


def _fresh(cron_minute: int, hour: int, day: str, weekday: str, minutes: int) -> dg.FreshnessPolicy:
    return dg.FreshnessPolicy.cron(
        deadline_cron=f"{cron_minute} {hour} {day} * {weekday}", lower_bound_delta=timedelta(minutes=minutes)
    )


FRESHNESS = {
    "daily_outcomes": _fresh(2, 0, "*", "*", 2),
    "pattern_summaries_daily": _fresh(2, 0, "*", "*", 2),
    "pattern_summaries_weekly": _fresh(5, 0, "*", "0", 5),
    "confidence_calibration": _fresh(10, 0, "1", "*", 10),
    "drift_metrics": _fresh(11, 0, "1", "*", 11),
    "learning_snapshots_daily": _fresh(1, 1, "*", "*", 1),
    "learning_snapshots_weekly": _fresh(2, 1, "*", "0", 2),
    "learning_snapshots_monthly": _fresh(5, 1, "1", "*", 5),
}


def asset_options(names: Names) -> dict[str, Any]:
    """The options every learning asset of a location takes: its key prefix, its IO manager, no required output."""
    return {"key_prefix": names.key_prefix, "io_manager_key": names(IO_MANAGER), "output_required": False}


def range_parameters(context: dg.AssetExecutionContext, time_window: str, **extra: Any) -> dict[str, Any]:
    """The audited parameters of a run over a partition or a range: its window and cadence."""
    window = to_window(context.partition_time_window)
    return {"start_date": window.start_iso, "end_date": window.end_iso, "time_window": time_window, **extra}


def custom_parameters(window: Window, **extra: Any) -> dict[str, Any]:
    """The audited parameters of a run over a custom window `START..END`."""
    return {"start_date": window.start_iso, "end_date": window.end_iso, "time_window": "CUSTOM", **extra}


def previous_month() -> dg.TimeWindowPartitionMapping:
    """The month and the month before (the first month has none, which is allowed)."""
    return beta.time_window_mapping(start_offset=-1, end_offset=0, allow_nonexistent_upstream_partitions=True)
