"""The learning operations as partitioned software-defined assets (docs/assets.md).

Graph: `daily_outcomes` -> `pattern_summaries_daily` / `pattern_summaries_weekly` /
`confidence_calibration` -> `drift_metrics`; snapshots (`learning_snapshots_daily`,
`_weekly`, `_monthly`, `learning_snapshot_custom`) hold the summaries of their window
and the latest calibration known at the window's end. On demand, any window
is one dynamic partition `START..END` of `pattern_summaries_custom`
(one extraction over the exact window; the 8 windows of equal length before it are read
for the emerging root causes' baseline), `confidence_calibration_custom` (one calibration over the
window; fewer than 30 outcomes fails INSUFFICIENT_DATA like a month) and
`learning_snapshot_custom`.

Every guarded asset starts with the guard (kill switch, audit record) before it reads
anything: upstream assets are `deps`, read through `AssetStorage` inside the work, so
a skipped upstream never makes a later run fail on loading, and a missing upstream
partition fails the operation with an audited UPSTREAM_MISSING naming the partitions.

Outcomes are read per UTC day: the materialized `daily_outcomes` partition when it
exists, else the outcome store validated on the fly (so a weekly run at Sunday 00:00
does not wait for Saturday's daily run, and a manual calibration works on a fresh
store). Daily-cadence and weekly assets use single-run backfills: a range is one run
that computes each partition in one pass and stores one file per partition.
Calibration and drift are one run per month, so one month with too few outcomes
fails alone. The custom assets share one dynamic partition per window `START..END`.

Snapshots are also appended to the append-only SnapshotStore (`$OPX_HOME/snapshots`)
when each partition is stored (after the kill-switch re-check, see `operations.py`);
an unchanged window keeps its id and version. A snapshot window is "empty" when it
holds no outcome (the WARN check `snapshot_window_not_empty`). The pattern summaries
evaluate their own WARN check `window_has_outcomes` per partition stored (a window
without any outcome: `empty_window: true` in its metadata).

Freshness policies follow the runbook: a scheduled run starting at 00:00 (snapshots
01:00) must have materialized within the expected duration (daily patterns 2 min,
weekly 5 min, calibration 10 min; snapshots 1 / 2 / 5 min). The custom assets have
no cadence, hence no freshness policy.

Each domain is its own module: `outcomes.py` (`daily_outcomes` and the window reads
every asset uses), `patterns.py`, `calibration.py` (with `drift_metrics`) and
`snapshots.py`; what they share (backfill and freshness policies, asset options, run
parameters) is `shared.py`. `build_assets` composes them.
"""

import dagster as dg

from opx_learning.defs.calibration import build_calibration
from opx_learning.defs.location import Location
from opx_learning.defs.outcomes import build_outcomes
from opx_learning.defs.patterns import build_patterns
from opx_learning.defs.snapshots import build_snapshots


def build_assets(loc: Location) -> list[dg.AssetsDefinition]:
    """The learning assets of one location (its partitions, names and resource keys); `daily_outcomes` first."""
    daily_outcomes = build_outcomes(loc)
    daily, weekly, pattern_summaries_custom = build_patterns(loc, daily_outcomes)
    confidence_calibration, confidence_calibration_custom, drift_metrics = build_calibration(loc, daily_outcomes)
    return [
        daily_outcomes,
        daily,
        weekly,
        pattern_summaries_custom,
        confidence_calibration,
        confidence_calibration_custom,
        drift_metrics,
        *build_snapshots(loc, daily_outcomes, daily, weekly, confidence_calibration),
    ]
