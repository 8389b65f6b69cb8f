"""Asset jobs: one per cadence of SPEC §0, one per on-demand custom window (the checklist job is in checks.py)."""

from __future__ import annotations

import dagster as dg

from opx_learning.defs import assets as a
from opx_learning.defs.service_calibration import confidence_calibration_by_service

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
    selection=dg.AssetSelection.assets(a.confidence_calibration, a.drift_metrics_asset, confidence_calibration_by_service),
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
]
