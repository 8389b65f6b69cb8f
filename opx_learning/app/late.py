"""Late outcomes: observe the outcome store's day versions, and list the computed partitions they left pending.

`observe_outcome_days` runs the `outcome_days` observation in this process against the
given Dagster instance (what `ingest` and the demo do after writing): each day whose stored
content changed gets its new data version, so Dagster shows that day's `daily_outcomes`
partition as unsynced (the partitions computed from it are listed by `pending_partitions`).

`pending_partitions` answers, from the instance alone, which computed partitions do not
reflect the stored outcomes yet (the `opx-learning status` list and the checklist item
"late outcomes pending"):

- a `daily_outcomes` day is pending when the version of the day it was computed from (the
  data version Dagster recorded on its materialization) is not the stored day's version;
- a partition computed from another one (summaries, calibrations, drift, snapshots, by
  the same dependencies as the assets) is pending when a partition it reads is pending,
  or was materialized after it.

Each pending partition carries `since`: when the change it waits for happened (the stored
day's write, or the upstream materialization), so the checklist can tell a refresh under
way from one that never came.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from opx_learning.config import Settings
from opx_learning.core.windows import iso
from opx_learning.defs.location import Location
from opx_learning.defs.outcome_days import (
    OBSERVED_BY_TAG,
    OUTCOME_DAYS,
    asset_records,
    build_outcome_days,
    data_version,
)
from opx_learning.stores.outcomes import DayVersion, outcome_store

# The tag under which Dagster records, on a materialization, the newest event of an upstream when it ran.
POINTER_TAG = "dagster/input_event_pointer/"

# asset -> (its cadence, the upstream it is computed from, how many cadence steps before its window it also reads)
GRAPH: dict[str, tuple[str, str, int]] = {
    "pattern_summaries_daily": ("DAILY", "daily_outcomes", 0),
    "pattern_summaries_weekly": ("WEEKLY", "daily_outcomes", 0),
    "confidence_calibration": ("MONTHLY", "daily_outcomes", 0),
    "confidence_calibration_by_service": ("MONTHLY", "daily_outcomes", 0),
    "drift_metrics": ("MONTHLY", "confidence_calibration", 1),
    "learning_snapshots_daily": ("DAILY", "pattern_summaries_daily", 0),
    "learning_snapshots_weekly": ("WEEKLY", "pattern_summaries_weekly", 0),
    "learning_snapshots_monthly": ("MONTHLY", "pattern_summaries_daily", 0),
}


@dataclass(frozen=True)
class Pending:
    """A computed partition that does not reflect the stored outcomes yet."""

    asset: str
    partition: str
    since: str | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return asdict(self)


@dataclass(frozen=True)
class _Latest:
    storage_id: int
    timestamp: float
    tags: dict[str, str]


def observe_outcome_days(
    settings: Settings,
    instance: dg.DagsterInstance,
    *,
    observed_by: str,
    key_prefix: str | None = None,
    verbose: bool = False,
) -> list[str]:
    """Observe the outcome store in this process: the days whose data version changed (now recorded), in order.

    Args:
        settings: the configuration (its outcome store and partitions).
        instance: the Dagster instance that records the observation.
        observed_by: who observes (`ingest`, `demo`), the run's `opx/observed_by` tag.
        key_prefix: the code location's key prefix, if any.
        verbose: print Dagster's console log (quiet by default, as every command is).
    """
    from opx_learning.app.launch import console
    from opx_learning.build import build_resources

    loc = Location.build(settings, key_prefix)
    asset, job = build_outcome_days(loc)
    store_key = loc.names("outcome_store")
    defs = dg.Definitions(
        assets=[asset],
        jobs=[job],
        resources={store_key: build_resources(settings, key_prefix)[store_key]},
        executor=dg.in_process_executor,
    )
    result = defs.resolve_job_def(job.name).execute_in_process(
        instance=instance, tags={OBSERVED_BY_TAG: observed_by}, raise_on_error=True, run_config=console(verbose)
    )
    return sorted({event.partition for event in result.get_asset_observation_events() if event.partition})


def _latest_materializations(instance: dg.DagsterInstance, key: dg.AssetKey) -> dict[str, _Latest]:
    """The newest materialization of each partition of `key`."""
    latest: dict[str, _Latest] = {}
    for record in asset_records(instance, key, observations=False):
        partition = record.partition_key
        if partition and partition not in latest:
            event = record.asset_materialization
            latest[partition] = _Latest(record.storage_id, record.timestamp, dict(event.tags or {}) if event else {})
    return latest


def _observations(instance: dg.DagsterInstance, key: dg.AssetKey) -> dict[str, list[tuple[int, str]]]:
    """Every observed (storage id, data version) of each partition of `key`, newest first."""
    found: dict[str, list[tuple[int, str]]] = {}
    for record in asset_records(instance, key, observations=True):
        version = data_version(record)
        if record.partition_key and version:
            found.setdefault(record.partition_key, []).append((record.storage_id, version))
    return found


def _day_change(history: list[tuple[int, str]], pointer: str, stored: DayVersion | None) -> str | None:
    """Why a computed day is pending, or None: as Dagster judges it, plus a stored change not observed yet.

    Dagster compares the day's newest observed version after the materialization's pointer with
    the one observed at or before it (`pointer`: the newest event of `outcome_days` when the day
    was computed).
    """
    cursor = int(pointer) if pointer.isdigit() else -1
    before = next((version for storage_id, version in history if storage_id <= cursor), None)
    after = next((version for storage_id, version in history if storage_id > cursor), None)
    if after is not None and after != before:
        return "a new data version of the stored day was observed after it was computed"
    newest = history[0][1] if history else None
    if stored is not None and stored.sha256 != newest:
        return "the stored day changed and is not observed yet"
    return None


def _when(timestamp: float) -> str:
    return iso(datetime.fromtimestamp(timestamp, UTC))


def pending_partitions(
    settings: Settings,
    instance: dg.DagsterInstance,
    *,
    versions: dict[str, DayVersion] | None = None,
    key_prefix: str | None = None,
) -> list[Pending]:
    """The computed partitions that do not reflect the stored outcomes yet (rules in the module docstring).

    Args:
        settings: the configuration (outcome store, partitions).
        instance: the Dagster instance whose materializations are compared.
        versions: the stored days' versions (default: read from the settings' outcome store).
        key_prefix: the code location's key prefix, if any.

    Returns:
        Pending partitions, by asset in dependency order, then partition.
    """
    loc = Location.build(settings, key_prefix)
    names, cadence = loc.names, loc.partitions.cadence
    versions = outcome_store(settings).day_versions() if versions is None else versions
    source = names.key(OUTCOME_DAYS).to_user_string()
    found: list[Pending] = []
    # asset -> partition -> (since, storage id of the newest change it waits for or carries)
    stale: dict[str, dict[str, str | None]] = {"daily_outcomes": {}}
    latest = {"daily_outcomes": _latest_materializations(instance, names.key("daily_outcomes"))}
    history = _observations(instance, names.key(OUTCOME_DAYS))
    for day, done in sorted(latest["daily_outcomes"].items()):
        reason = _day_change(history.get(day, []), done.tags.get(POINTER_TAG + source, ""), versions.get(day))
        if reason is not None:
            since = versions[day].written_at if day in versions else None
            stale["daily_outcomes"][day] = since
            found.append(Pending("daily_outcomes", day, since, reason))
    spans = {name: _Spans(definition) for name, definition in cadence.items()}
    for asset, (own_cadence, upstream, before) in GRAPH.items():
        mine = latest[asset] = _latest_materializations(instance, names.key(asset))
        stale[asset] = {}
        up_cadence = "DAILY" if upstream in ("daily_outcomes", "pattern_summaries_daily") else GRAPH[upstream][0]
        up_latest, up_stale = latest[upstream], stale[upstream]
        for partition, done in sorted(mine.items()):
            start, end = spans[own_cadence].window(partition, before)
            reads = spans[up_cadence].within(start, end)
            waits = [up_stale[key] for key in reads if key in up_stale]
            newer = [up_latest[key] for key in reads if key in up_latest and up_latest[key].storage_id > done.storage_id]
            if waits:
                since = min((w for w in waits if w), default=None)
                reason = f"{upstream} it reads is pending"
            elif newer:
                since = _when(min(n.timestamp for n in newer))
                reason = f"{upstream} it reads was recomputed after it"
            else:
                continue
            stale[asset][partition] = since
            found.append(Pending(asset, partition, since, reason))
    return found


class _Spans:
    """The windows of every partition of one time-window partitions definition, computed once."""

    def __init__(self, partitions_def: dg.TimeWindowPartitionsDefinition) -> None:
        self.keys = partitions_def.get_partition_keys()
        windows = [partitions_def.time_window_for_partition_key(key) for key in self.keys]
        self.starts = [w.start.timestamp() for w in windows]
        self.ends = [w.end.timestamp() for w in windows]
        self.index = {key: i for i, key in enumerate(self.keys)}

    def window(self, key: str, before: int = 0) -> tuple[float, float]:
        """The window of `key`, extended back by `before` partitions (as far as they exist)."""
        i = self.index.get(key)
        if i is None:
            return 0.0, 0.0
        return self.starts[max(i - before, 0)], self.ends[i]

    def within(self, start: float, end: float) -> list[str]:
        """The keys whose windows lie in [start, end)."""
        first = bisect.bisect_left(self.starts, start)
        return [self.keys[i] for i in range(first, len(self.keys)) if self.ends[i] <= end and self.starts[i] < end]


def older_than(pending: Iterable[Pending], now: datetime, hours: float = 24) -> list[Pending]:
    """The pending partitions waiting for a change older than `hours` (no known time counts as old)."""
    limit = now.timestamp() - hours * 3600
    return [p for p in pending if p.since is None or datetime.fromisoformat(p.since).timestamp() < limit]
