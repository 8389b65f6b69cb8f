"""Dagster definitions of opx_learning: partitions, assets, checks, schedules, sensors, jobs."""

import warnings

import dagster as dg

# Single-run backfill policies and the tolerant partition mapping are marked beta in
# Dagster 1.13; they are the documented way to backfill a range in one run.
warnings.filterwarnings(
    "ignore",
    message=r"Parameter `(backfill_policy|allow_nonexistent_upstream_partitions)`",
    category=dg.BetaWarning,
)
# Per-partition check results (the `window_has_outcomes` check of the pattern summaries) are a preview.
warnings.filterwarnings(
    "ignore", message=r"Specifying a partitions_def on an AssetCheckSpec", category=dg.PreviewWarning
)
