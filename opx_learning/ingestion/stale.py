"""Which materialized partitions an ingest made stale, and a visible mark on them in Dagster.

Downstream assets read the materialized `daily_outcomes` partition of a day when it exists,
so rows ingested into a day that was already materialized stay invisible until that day is
re-run. The Dagster instance of the DAGSTER_HOME the caller names (else `$OPX_HOME/dagster_home`,
as `trigger` uses) is asked which partitions of the affected assets are materialized; nothing is created
when there is no instance.

The mark is an observation of the outcome store (`outcome_days`, docs/late-outcomes.md):
each day whose stored content changed gets its new data version (the SHA-256 of its file),
so Dagster shows that day's `daily_outcomes` partition as unsynced (`opx-learning status`
lists everything computed from it); the `late_outcomes_automation` sensor, once started,
refreshes them. The commands listed refresh them by hand.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from opx_learning.config import Settings

DAILY_ASSETS = ("daily_outcomes", "pattern_summaries_daily")
WEEKLY_ASSET = "pattern_summaries_weekly"
MONTHLY_ASSET = "confidence_calibration"


def dagster_home(settings: Settings, given: str | Path | None = None) -> Path:
    """`given` (the caller's DAGSTER_HOME), else `$OPX_HOME/dagster_home` (where `opx-learning trigger` and `demo` keep runs)."""
    return Path(given).expanduser().absolute() if given else settings.home / "dagster_home"


def _has_instance(home: Path) -> bool:
    return (home / "dagster.yaml").is_file() or (home / "storage").is_dir() or (home / "history").is_dir()


def stale_partitions(
    days: list[date], *, settings: Settings, observe: bool = True, home: str | Path | None = None,
) -> dict[str, Any] | None:
    """The materialized partitions whose windows hold `days`, with the commands that refresh them.

    Args:
        days: UTC days that received new outcomes.
        settings: the partitions start, and the home whose `dagster_home` is the default instance.
        observe: observe the outcome store (`outcome_days`): each changed day gets its new data version.
        home: the Dagster home to ask (the caller's DAGSTER_HOME; default `$OPX_HOME/dagster_home`).

    Returns:
        dict | None: `dagster_home`, `partitions` (asset -> stale keys), `commands` (re-run
        commands) and `observed` (days whose new data version was observed); None when
        DAGSTER_HOME holds no instance.
    """
    home = dagster_home(settings, home)
    if not days or not _has_instance(home):
        return None
    import dagster as dg

    from opx_learning.defs.location import partitions_for

    parts = partitions_for(settings.partitions_start)
    daily_partitions, weekly_partitions, monthly_partitions = parts.daily, parts.weekly, parts.monthly

    def keys(partitions_def: dg.TimeWindowPartitionsDefinition) -> set[str]:
        return {
            partitions_def.get_partition_key_for_timestamp(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp())
            for d in days
        }

    wanted = {
        **{asset: keys(daily_partitions) for asset in DAILY_ASSETS},
        WEEKLY_ASSET: keys(weekly_partitions),
        MONTHLY_ASSET: keys(monthly_partitions),
    }
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        stale = {
            asset: sorted(candidates & instance.get_materialized_partitions(dg.AssetKey(asset)))
            for asset, candidates in wanted.items()
        }
        observed: list[str] = []
        if observe:
            from opx_learning.app.late import observe_outcome_days

            observed = observe_outcome_days(settings, instance, observed_by="ingest")
    finally:
        instance.dispose()
    daily = sorted(set(stale[DAILY_ASSETS[0]]) | set(stale[DAILY_ASSETS[1]]))
    commands = _daily_command(daily)
    commands += [
        f"opx-learning trigger extract-patterns --type weekly --start {key} --end {_end(weekly_partitions, key)}"
        for key in stale[WEEKLY_ASSET]
    ]
    commands += [
        f"opx-learning trigger calibrate --start {key} --end {_end(monthly_partitions, key)}"
        for key in stale[MONTHLY_ASSET]
    ]
    return {
        "dagster_home": str(home),
        "partitions": {asset: found for asset, found in stale.items() if found},
        "commands": commands,
        "observed": observed,
    }


def _daily_command(keys: list[str]) -> list[str]:
    """One `trigger extract-patterns` per run of consecutive days (end exclusive)."""
    runs: list[tuple[date, date]] = []
    for day in sorted(date.fromisoformat(key) for key in keys):
        if runs and day == runs[-1][1] + timedelta(days=1):
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return [
        f"opx-learning trigger extract-patterns --start {first.isoformat()} --end {(last + timedelta(days=1)).isoformat()}"
        for first, last in runs
    ]


def _end(partitions_def: Any, key: str) -> str:
    return partitions_def.time_window_for_partition_key(key).end.astimezone(UTC).date().isoformat()
