"""Late outcomes flow through by themselves: automation conditions and the `late_outcomes_automation` sensor.

Every asset computed from `outcome_days` carries the condition `late_outcomes`: a partition
that was already computed is requested again once a partition it depends on has a new
version (a new data version of a day observed on `outcome_days`, or a new
materialization of a computed upstream), counted since it was last requested or
updated, and only while neither it nor anything it depends on is in progress. So an
ingest into one materialized day refreshes that day's `daily_outcomes` and
`pattern_summaries_daily` (one run), then its week's summaries, its month's calibrations
(and the drift of that month and the next, whose change column reads it), then that day's,
week's and month's snapshots, once the calibration they hold is refreshed. A partition
never computed is left to the schedules; partitions whose window ended more than
`LOOKBACK` ago are left alone.

Snapshots refresh when their summaries change, not when a calibration alone changes
(a snapshot holds the calibration known at its window's end); they wait while a
calibration they read is requested or running, so they hold the refreshed one.

`daily_outcomes` also catches up on the sensor's first evaluation (`ChangedBeforeStart`):
Dagster's "updated" conditions only see changes made after that evaluation, so the days
computed before their newest observed version (outcomes ingested while the sensor was
stopped) are requested then, and everything computed from them follows.

The sensor `late_outcomes_automation` (an `AutomationConditionSensorDefinition`,
evaluated in the code location every 30 s while the daemon runs) starts STOPPED, like every
schedule: start it after verification, from the UI or with
`dagster sensor start late_outcomes_automation`.
Requests of one tick are coalesced: several partitions of an asset become one backfill,
whose single-run assets refresh a range in one run. Each run passes the guard like every
launch path (kill switch, maintenance window, the automation's own rate limit; audited with
principal `automation`, trigger type AUTOMATION, see `resources/safety.py`); a run the guard
refuses stores nothing and is audited SKIPPED, as a skipped schedule tick is.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import dagster as dg

from opx_learning.defs import beta
from opx_learning.defs.location import Location
from opx_learning.defs.outcome_days import OUTCOME_DAYS, waiting_days
from opx_learning.resources.safety import AUTOMATION_SENSOR

LOOKBACK = timedelta(days=400)
# The assets the late outcomes refresh, by their own names; snapshots ignore a calibration-only change.
REFRESHED = (
    "daily_outcomes",
    "pattern_summaries_daily",
    "pattern_summaries_weekly",
    "confidence_calibration",
    "confidence_calibration_by_service",
    "drift_metrics",
)
SNAPSHOTS = ("learning_snapshots_daily", "learning_snapshots_weekly", "learning_snapshots_monthly")
CALIBRATION = "confidence_calibration"
# The asset computed from the stored days (`outcome_days`).
FIRST = "daily_outcomes"
CONDITION_LABEL = "late_outcomes"


def late_outcomes_condition(ignored: Sequence[dg.AssetKey] = (), *, wait_for_requested: bool = False) -> dg.AutomationCondition:
    """Refresh a computed partition once a dependency has a new version (deps in `ignored` do not trigger it).

    Args:
        ignored: dependencies whose updates alone do not request a refresh.
        wait_for_requested: also wait while a dependency is requested on the same tick (snapshots:
            so they read the refreshed summaries and calibration, never the old ones).
    """
    a = dg.AutomationCondition
    updated = a.any_deps_updated()
    if ignored:
        updated = updated.ignore(dg.AssetSelection.assets(*ignored))
    condition = (
        a.in_latest_time_window(LOOKBACK)
        & updated.since_last_handled()
        & ~a.missing()
        & ~a.any_deps_in_progress()
        & ~a.in_progress()
    )
    if wait_for_requested:
        condition = condition & ~a.any_deps_match(a.will_be_requested())
    return condition.with_label(CONDITION_LABEL)


class ChangedBeforeStart(dg.AutomationCondition):
    """The computed days whose stored day was observed with a new version after they were computed.

    Dagster's own "updated" conditions only see changes after the sensor's first evaluation;
    this one reads the instance, and is asked only on that first evaluation (it needs the
    sensor evaluated in the code location: `use_user_code_server=True`).
    """

    @property
    def name(self) -> str:
        """The condition's label in the UI."""
        return "stored_day_changed_before_start"

    def evaluate(self, context: dg.AutomationContext) -> dg.AutomationResult:
        """The candidate days computed before their newest observed version of `outcome_days`."""
        candidates = context.candidate_subset
        if candidates.is_empty:
            return dg.AutomationResult(context, candidates)
        source = dg.AssetKey([*context.key.path[:-1], OUTCOME_DAYS])
        days = waiting_days(context.asset_graph_view.instance, source, context.key)
        return dg.AutomationResult(context, candidates.compute_intersection_with_partition_keys(days))


def catch_up_condition() -> dg.AutomationCondition:
    """On the sensor's first evaluation: the computed days that already have a newer stored version."""
    a = dg.AutomationCondition
    return (
        a.initial_evaluation()
        & a.in_latest_time_window(LOOKBACK)
        & ~a.missing()
        & ~a.in_progress()
        & ChangedBeforeStart()
    ).with_label("changed_before_start")


def with_automation(loc: Location, assets: Sequence[dg.AssetsDefinition]) -> list[dg.AssetsDefinition]:
    """`assets` with the `late_outcomes` condition on the assets the late outcomes refresh (others unchanged)."""
    n = loc.names
    refreshed = {n.key(name) for name in REFRESHED}
    snapshots = {n.key(name) for name in SNAPSHOTS}
    plain = late_outcomes_condition()
    snapshot = late_outcomes_condition([n.key(CALIBRATION)], wait_for_requested=True)
    first = (plain | catch_up_condition()).with_label(CONDITION_LABEL)

    def condition(spec: dg.AssetSpec) -> dg.AssetSpec:
        if spec.key == n.key(FIRST):
            return spec.replace_attributes(automation_condition=first)
        if spec.key in refreshed:
            return spec.replace_attributes(automation_condition=plain)
        if spec.key in snapshots:
            return spec.replace_attributes(automation_condition=snapshot)
        return spec

    return [dg.map_asset_specs(condition, [asset])[0] if _touched(asset, refreshed | snapshots) else asset
            for asset in assets]


def _touched(asset: dg.AssetsDefinition, keys: set[dg.AssetKey]) -> bool:
    return bool(set(asset.keys) & keys)


def refreshed_keys(loc: Location) -> list[dg.AssetKey]:
    """The keys of every asset the late outcomes refresh."""
    return [loc.names.key(name) for name in (*REFRESHED, *SNAPSHOTS)]


def build_automation_sensor(loc: Location) -> dg.AutomationConditionSensorDefinition:
    """The `late_outcomes_automation` sensor of one location (STOPPED by default)."""
    return beta.automation_condition_sensor(
        name=loc.names(AUTOMATION_SENSOR),
        target=dg.AssetSelection.assets(*refreshed_keys(loc)),
        default_status=dg.DefaultSensorStatus.STOPPED,
        minimum_interval_seconds=30,
        # Evaluated in the code location: the first evaluation reads the instance (ChangedBeforeStart).
        use_user_code_server=True,
        description="Refreshes the computed partitions that late outcomes changed (automation condition "
        "`late_outcomes`); every run is guarded and audited with principal `automation`. Start after verification.",
    )
