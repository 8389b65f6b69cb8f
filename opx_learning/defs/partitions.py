"""The partitions of every asset, and the only bridge from Dagster time windows to `Window`.

The partitions themselves are built per code location (`Partitions` in `defs/location.py`)
and start on the settings' `partitions_start` (default 2025-01-01; `OPX_PARTITIONS_START`):
far enough back for a year of history and the 90-day demo, short enough that the UI's
partition bars stay readable. Set it earlier to backfill older outcomes. Weekly partitions begin on the first
Sunday on or after it, monthly ones on the first 1st of a month on or after it.
`end_offset=0`: a partition exists once its window is complete, so a schedule
ticking at 00:00 targets the day / week / month that just ended.

On-demand windows of any length (CUSTOM pattern extraction, calibration and
snapshot) share one dynamic partition set, a partition per requested window keyed
`START..END` (half-open, dates when both bounds are midnight, else ISO instants),
e.g. `2026-01-01..2026-02-01` for January 2026 or
`2026-01-03T06:00:00.000Z..2026-01-04T06:00:00.000Z`. Its name,
`custom_snapshot_windows`, predates the custom patterns and calibration and is kept so
existing instances keep their windows.
"""

from __future__ import annotations

from datetime import UTC, datetime, time

import dagster as dg

from opx_learning.core.windows import Instant, Window, WindowError, iso

_CUSTOM_SEPARATOR = ".."


def to_window(time_window: dg.TimeWindow) -> Window:
    """The half-open UTC `Window` of a Dagster time window (one partition or a range)."""
    return Window(time_window.start.astimezone(UTC), time_window.end.astimezone(UTC))


def partition_window(partitions_def: dg.TimeWindowPartitionsDefinition, key: str) -> Window:
    """The `Window` of one partition key."""
    return to_window(partitions_def.time_window_for_partition_key(key))


def keys_in_window(partitions_def: dg.TimeWindowPartitionsDefinition, window: Window) -> list[str]:
    """Keys of the existing (complete) partitions that overlap `window`, in order."""
    return [
        key
        for key in partitions_def.get_partition_keys()
        if (span := partitions_def.time_window_for_partition_key(key)).start < window.end and span.end > window.start
    ]


def whole(partitions_def: dg.TimeWindowPartitionsDefinition, window: Window) -> bool:
    """Whether both bounds of `window` are partition boundaries (whole days, weeks or months)."""
    def boundary(instant: datetime) -> bool:
        span = partitions_def.time_window_for_partition_key(partitions_def.get_partition_key_for_timestamp(instant.timestamp()))
        return span.start.astimezone(UTC) == instant

    return boundary(window.start) and boundary(window.end)


def last_complete_key(partitions_def: dg.TimeWindowPartitionsDefinition, at: datetime) -> str | None:
    """The key of the last partition whose window ended at or before `at` (a schedule's target)."""
    keys = partitions_def.get_partition_keys(current_time=at)
    return keys[-1] if keys else None


def _bound(instant: datetime) -> str:
    return instant.date().isoformat() if instant.timetz().replace(tzinfo=None) == time() else iso(instant)


def custom_key(window: Window) -> str:
    """The dynamic partition key of a custom window."""
    return f"{_bound(window.start)}{_CUSTOM_SEPARATOR}{_bound(window.end)}"


def custom_window(key: str) -> Window:
    """The window of a custom partition key `START..END`.

    Raises:
        WindowError: the key is not `START..END` with readable bounds.
    """
    start, separator, end = key.partition(_CUSTOM_SEPARATOR)
    if not separator:
        raise WindowError(f"partition: {key!r} is not START..END (e.g. 2026-01-01..2026-02-01)")
    return Window.parse(start, end)


def custom_key_for(start: Instant, end: Instant) -> str:
    """Normalise a requested custom range (any accepted start/end form) to its partition key."""
    return custom_key(Window.parse(start, end))

