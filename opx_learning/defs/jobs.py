"""Named jobs: one per operation and cadence (docs/design.md#operations), one per on-demand custom window (the morning checklist's job is in checks.py).

Every run of the learning assets belongs to one of these jobs (schedules, `trigger`, REST,
the demo, and backfills launched from a job's page), so the UI can open its job and
re-execute it. An operation's job selects its assets and the checks those assets evaluate
themselves (e.g. `window_has_outcomes`, one result per partition stored); the morning
checklist's items run only in `morning_checklist_job` (checks.py), so a range run plans no
check it does not evaluate.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from opx_learning.defs.location import Location

_OPERATION_JOBS: dict[str, tuple[tuple[str, ...], str]] = {
    "daily_outcomes_job": (
        ("daily_outcomes",),
        "Validation of one day's outcomes from the outcome store (the input stage, not audited).",
    ),
    "daily_patterns_job": (
        ("daily_outcomes", "pattern_summaries_daily"),
        "PATTERN_EXTRACTION of one day (validated outcomes, then summaries).",
    ),
    "weekly_patterns_job": (("pattern_summaries_weekly",), "PATTERN_EXTRACTION of one Sunday-to-Sunday week."),
    "monthly_calibration_job": (
        ("confidence_calibration", "drift_metrics", "confidence_calibration_by_service"),
        "CALIBRATION of one calendar month, then its drift against the previous month.",
    ),
    "daily_snapshot_job": (("learning_snapshots_daily",), "DAILY SNAPSHOT of one day."),
    "weekly_snapshot_job": (("learning_snapshots_weekly",), "WEEKLY SNAPSHOT of one week."),
    "monthly_snapshot_job": (("learning_snapshots_monthly",), "MONTHLY SNAPSHOT of one month."),
    "custom_snapshot_job": (
        ("learning_snapshot_custom",),
        "CUSTOM SNAPSHOT of one window START..END (add the window as a partition first).",
    ),
    "custom_patterns_job": (
        ("pattern_summaries_custom",),
        "PATTERN_EXTRACTION of one window START..END (add the window as a partition first).",
    ),
    "custom_calibration_job": (
        ("confidence_calibration_custom",),
        "CALIBRATION of one window START..END (add the window as a partition first).",
    ),
}
JOB_ASSETS: dict[str, frozenset[str]] = {name: frozenset(assets) for name, (assets, _) in _OPERATION_JOBS.items()}
"""The assets (their own names, without a location's prefix) each operation job materializes."""


def build_jobs(loc: Location, assets: Sequence[dg.AssetsDefinition]) -> dict[str, dg.UnresolvedAssetJobDefinition]:
    """The named operation jobs of one location, by their unprefixed name."""
    by_name = {loc.names.unprefixed(asset.key): asset for asset in assets}
    jobs = {}
    for name, (members, description) in _OPERATION_JOBS.items():
        chosen = [by_name[member] for member in members]
        own_checks = [key for asset in chosen for key in asset.check_keys]
        selection = dg.AssetSelection.assets(*chosen).without_checks() | dg.AssetSelection.checks(*own_checks)
        jobs[name] = dg.define_asset_job(loc.names(name), selection=selection, description=description)
    return jobs


def job_for_assets(asset_keys: Sequence[str]) -> str:
    """The name of the named job that materializes exactly `asset_keys`.

    Args:
        asset_keys: asset keys as user strings (order and repeats do not matter).

    Returns:
        The job's name, e.g. `daily_patterns_job` for `daily_outcomes` + `pattern_summaries_daily`.

    Raises:
        ValueError: no job materializes exactly these assets.
    """
    wanted = frozenset(asset_keys)
    for name, keys in JOB_ASSETS.items():
        if keys == wanted:
            return name
    known = "; ".join(f"{name}: {', '.join(sorted(keys))}" for name, keys in JOB_ASSETS.items())
    raise ValueError(f"no job materializes exactly {', '.join(sorted(wanted)) or 'no asset'} (jobs: {known})")


def job_covering(asset_keys: Sequence[str]) -> str:
    """The smallest named job that materializes every one of `asset_keys` (a run may select a subset of it).

    Raises:
        ValueError: no job holds all these assets.
    """
    wanted = frozenset(asset_keys)
    holding = sorted((len(keys), name) for name, keys in JOB_ASSETS.items() if wanted and wanted <= keys)
    if not holding:
        return job_for_assets(asset_keys)  # raises with the list of jobs
    return holding[0][1]
