"""Asset jobs: one per cadence of SPEC §0, one per on-demand custom window, and the morning checklist."""

from __future__ import annotations

from collections.abc import Iterable

import dagster as dg

from opx_learning.defs import assets as a

daily_patterns_job = dg.define_asset_job(
    "daily_patterns_job",
    selection=dg.AssetSelection.assets(a.daily_outcomes, a.pattern_summaries_daily),
    description="PATTERN_EXTRACTION of one day (validated outcomes, then summaries).",
)
weekly_patterns_job = dg.define_asset_job(
    "weekly_patterns_job",
    selection=dg.AssetSelection.assets(a.pattern_summaries_weekly),
    description="PATTERN_EXTRACTION of one Sunday-to-Sunday week.",
)
monthly_calibration_job = dg.define_asset_job(
    "monthly_calibration_job",
    selection=dg.AssetSelection.assets(a.confidence_calibration, a.drift_metrics_asset),
    description="CALIBRATION of one calendar month, then its drift against the previous month.",
)
daily_snapshot_job = dg.define_asset_job(
    "daily_snapshot_job",
    selection=dg.AssetSelection.assets(a.learning_snapshots_daily),
    description="DAILY SNAPSHOT of one day.",
)
weekly_snapshot_job = dg.define_asset_job(
    "weekly_snapshot_job",
    selection=dg.AssetSelection.assets(a.learning_snapshots_weekly),
    description="WEEKLY SNAPSHOT of one week.",
)
monthly_snapshot_job = dg.define_asset_job(
    "monthly_snapshot_job",
    selection=dg.AssetSelection.assets(a.learning_snapshots_monthly),
    description="MONTHLY SNAPSHOT of one month.",
)
custom_snapshot_job = dg.define_asset_job(
    "custom_snapshot_job",
    selection=dg.AssetSelection.assets(a.learning_snapshot_custom),
    description="CUSTOM SNAPSHOT of one window START..END (add the window as a partition first).",
)
custom_patterns_job = dg.define_asset_job(
    "custom_patterns_job",
    selection=dg.AssetSelection.assets(a.pattern_summaries_custom),
    description="PATTERN_EXTRACTION of one window START..END (add the window as a partition first).",
)
custom_calibration_job = dg.define_asset_job(
    "custom_calibration_job",
    selection=dg.AssetSelection.assets(a.confidence_calibration_custom),
    description="CALIBRATION of one window START..END (add the window as a partition first).",
)
morning_checklist_job = dg.define_asset_job(
    "morning_checklist_job",
    selection=dg.AssetSelection.all_asset_checks(),
    description="Evaluate every check of the runbook's morning checklist on the last complete partitions.",
)

JOBS = [
    daily_patterns_job,
    weekly_patterns_job,
    monthly_calibration_job,
    daily_snapshot_job,
    weekly_snapshot_job,
    monthly_snapshot_job,
    custom_snapshot_job,
    custom_patterns_job,
    custom_calibration_job,
    morning_checklist_job,
]

_JOB_OF_ASSETS = {
    frozenset({"daily_outcomes", "pattern_summaries_daily"}): daily_patterns_job.name,
    frozenset({"pattern_summaries_weekly"}): weekly_patterns_job.name,
    frozenset({"confidence_calibration", "drift_metrics"}): monthly_calibration_job.name,
    frozenset({"learning_snapshots_daily"}): daily_snapshot_job.name,
    frozenset({"learning_snapshots_weekly"}): weekly_snapshot_job.name,
    frozenset({"learning_snapshots_monthly"}): monthly_snapshot_job.name,
    frozenset({"learning_snapshot_custom"}): custom_snapshot_job.name,
    frozenset({"pattern_summaries_custom"}): custom_patterns_job.name,
    frozenset({"confidence_calibration_custom"}): custom_calibration_job.name,
}


def job_for_assets(asset_keys: Iterable[str]) -> str:
    """The name of the named job that materializes exactly these assets.

    Raises:
        KeyError: no job selects exactly these assets.
    """
    wanted = frozenset(asset_keys)
    if wanted not in _JOB_OF_ASSETS:
        raise KeyError(f"no job materializes exactly {', '.join(sorted(wanted))}")
    return _JOB_OF_ASSETS[wanted]
