"""The learning snapshots: daily, weekly, monthly and custom windows (docs/assets.md).

A snapshot holds the summaries of its window and the latest calibration known at the
window's end. Snapshots are also appended to the append-only SnapshotStore
(`$OPX_HOME/snapshots`) when each partition is stored (after the kill-switch re-check,
see `operations.py`); an unchanged window keeps its id and version, and the metadata
carries the diff against the previous snapshot of its cadence (`snapshot_diffs.py`).
A snapshot window is "empty" when it holds no outcome.
"""

from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any

import dagster as dg
import polars as pl

from opx_learning.core.emerging import baseline_reach
from opx_learning.core.patterns import extract_patterns_windows
from opx_learning.core.snapshots import build_snapshot, prepare_calibrations
from opx_learning.core.windows import Window
from opx_learning.defs import beta
from opx_learning.defs.location import Location, Partitions
from opx_learning.defs.operations import Produced, missing_upstream, run_operation
from opx_learning.defs.outcomes import scan_window_outcomes
from opx_learning.defs.partitions import custom_window, partition_window
from opx_learning.defs.patterns import summary_metadata
from opx_learning.defs.shared import (
    FRESHNESS,
    SINGLE_RUN,
    asset_options,
    custom_parameters,
    previous_month,
    range_parameters,
)
from opx_learning.defs.snapshot_diffs import snapshot_diff_metadata
from opx_learning.resources.io_managers import AssetStorage


def _snapshot_range(
    context: dg.AssetExecutionContext,
    r: Any,
    snapshot_type: str,
    partitions: Partitions,
    partitions_def: dg.TimeWindowPartitionsDefinition,
    summaries_name: str,
    summaries_partitions: dg.TimeWindowPartitionsDefinition,
) -> Iterator[Any]:
    cadence = "--type weekly" if summaries_partitions is partitions.weekly else "--type daily"

    def work() -> Produced:
        windows = {key: partition_window(partitions_def, key) for key in context.partition_keys}
        span = Window(min(w.start for w in windows.values()), max(w.end for w in windows.values()))
        needed = summaries_partitions.get_partition_keys_in_time_window(dg.TimeWindow(span.start, span.end))
        # Every stored summary of the span in one Parquet scan (a month's snapshot needs its days).
        sources = r.asset_storage.parquet_sources(summaries_name, needed)
        missing = [key for key in needed if key not in sources]
        if missing:
            hint = (
                f"run `opx-learning trigger extract-patterns {cadence} --start {span.start_iso} "
                f"--end {span.end_iso}` first"
            )
            raise missing_upstream(summaries_name, missing, hint)
        summaries = _by_window(pl.scan_parquet(list(sources.values())).collect(), windows)
        return _snapshots(snapshot_type, windows, span, summaries, r, partitions.monthly)

    parameters = range_parameters(context, snapshot_type, snapshot_type=snapshot_type)
    yield from run_operation(context, r.safety, r.asset_storage, "SNAPSHOT", parameters, work)


def _by_window(every: pl.DataFrame, windows: Mapping[str, Window]) -> dict[str, pl.DataFrame]:
    """The summaries lying in each snapshot window (a month gets its days' summaries)."""
    if every.is_empty():
        return {key: every for key in windows}
    # Sorted by start, each window's candidates are one slice (found by binary search, not a filter per window).
    every = every.sort("window_start", maintain_order=True)
    starts = every["window_start"]
    result = {}
    for key, window in windows.items():
        begin, end = _bounds(starts, window)
        result[key] = every.slice(begin, end - begin).filter(pl.col("window_end") <= window.end)
    return result


def _bounds(instants: pl.Series, window: Window) -> tuple[int, int]:
    """The rows of sorted `instants` in `[window.start, window.end)`, as (begin, end) offsets."""
    found = instants.search_sorted(pl.Series([window.start, window.end], dtype=instants.dtype), side="left")
    return int(found[0]), int(found[1])


def known_calibrations(
    asset_storage: AssetStorage, until: Window, monthly: dg.TimeWindowPartitionsDefinition
) -> list[dict[str, Any]]:
    """Stored calibrations of the 13 months before `until.end` (the candidates for "latest known")."""
    months = monthly.get_partition_keys_in_time_window(
        dg.TimeWindow(until.start - timedelta(days=400), until.end)
    )
    found = [asset_storage.read("confidence_calibration", key) for key in months]
    return [item for item in found if isinstance(item, Mapping)]


def _snapshots(
    snapshot_type: str,
    windows: dict[str, Window],
    span: Window,
    summaries: Mapping[str, pl.DataFrame],
    r: Any,
    monthly: dg.TimeWindowPartitionsDefinition,
) -> Produced:
    outcomes = scan_window_outcomes(r.asset_storage, r.outcome_store, span)
    outcomes = outcomes.select("outcome_id", "service", "recorded_at").collect()
    calibrations = prepare_calibrations(known_calibrations(r.asset_storage, span, monthly))
    store = r.snapshot_store.store()
    outcomes = outcomes.sort("recorded_at", maintain_order=True)
    recorded = outcomes["recorded_at"]
    values, metadata = {}, {}
    for key, window in windows.items():
        begin, end = _bounds(recorded, window)
        in_window = outcomes.slice(begin, end - begin)
        values[key] = build_snapshot(snapshot_type, window.start, window.end, in_window, summaries[key], calibrations)
        metadata[key] = snapshot_metadata(values[key])
    snapshot_ids: list[str] = []
    results = {
        "snapshot_ids": snapshot_ids,  # filled as each snapshot is stored (at most 50 listed)
        "snapshots": len(values),
        "empty_windows": sum(1 for m in metadata.values() if m["empty"].value),
    }

    last: list[Any] = []  # the snapshot stored just before, the previous one of the next window

    def persist(key: str, built: Any) -> dict[str, Any]:
        stored = store.append(built)
        metadata[key] |= {"snapshot_id": stored.snapshot_id, "version": stored.version}
        metadata[key] |= snapshot_diff_metadata(store, stored, last[-1] if last else None)
        last[:] = [stored]
        if len(snapshot_ids) < 50:
            snapshot_ids.append(stored.snapshot_id)
        return stored.to_dict()

    return Produced(values, metadata, results, persist=persist)


def snapshot_metadata(snapshot: Any) -> dict[str, Any]:
    """Materialization metadata of one stored snapshot."""
    return {
        "snapshot_id": snapshot.snapshot_id,
        "version": snapshot.version,
        "content_hash": snapshot.content_hash,
        "outcomes": snapshot.counts.get("outcomes", 0),
        "summaries": snapshot.counts.get("summaries", 0),
        "calibrations": snapshot.counts.get("calibrations", 0),
        "services": len(snapshot.services),
        "service_names": ", ".join(snapshot.services) or "-",
        "calibration_id": str(snapshot.created_from.get("calibration_id") or "-"),
        # An empty window = no outcomes (its summaries are then the zero "ALL" row only).
        "empty": dg.MetadataValue.bool(snapshot.counts.get("outcomes", 0) == 0),
    }


def _learning_snapshot_custom(
    context: dg.AssetExecutionContext, r: Any, monthly: dg.TimeWindowPartitionsDefinition
) -> Iterator[Any]:
    window = custom_window(context.partition_key)

    def work() -> Produced:
        outcomes = scan_window_outcomes(r.asset_storage, r.outcome_store, baseline_reach(window))
        summaries = extract_patterns_windows(outcomes, [window])
        key = context.partition_key
        produced = _snapshots("CUSTOM", {key: window}, window, {key: summaries}, r, monthly)
        produced.metadata[key].update(summary_metadata(summaries))
        return produced

    parameters = custom_parameters(window, snapshot_type="CUSTOM")
    yield from run_operation(context, r.safety, r.asset_storage, "SNAPSHOT", parameters, work)


def build_snapshots(
    loc: Location,
    daily_outcomes: dg.AssetsDefinition,
    daily: dg.AssetsDefinition,
    weekly: dg.AssetsDefinition,
    confidence_calibration: dg.AssetsDefinition,
) -> list[dg.AssetsDefinition]:
    """The daily, weekly, monthly and custom snapshots of one location, over the summaries and calibrations they hold."""
    p, n = loc.partitions, loc.names
    io = asset_options(n)
    snapshots = n.required("outcome_store", "asset_storage", "safety", "snapshot_store")

    def snapshot(
        name: str,
        snapshot_type: str,
        partitions_def: dg.TimeWindowPartitionsDefinition,
        summaries: dg.AssetsDefinition,
        summaries_partitions: dg.TimeWindowPartitionsDefinition,
    ) -> dg.AssetsDefinition:
        @beta.asset(
            name=name,
            partitions_def=partitions_def,
            backfill_policy=SINGLE_RUN,
            deps=[summaries, dg.AssetDep(confidence_calibration, partition_mapping=previous_month())],
            freshness_policy=FRESHNESS[name],
            required_resource_keys=snapshots,
            group_name="snapshots",
            kinds={"json"},
            description=f"Immutable, versioned {snapshot_type.lower()} snapshot of the learned state "
            "(summaries of the window, latest calibration known at its end).",
            **io,
        )
        def _asset(context: dg.AssetExecutionContext) -> Iterator[Any]:
            summaries_name = n.unprefixed(summaries.key)
            yield from _snapshot_range(
                context, n.resources(context), snapshot_type, p, partitions_def, summaries_name, summaries_partitions
            )

        return _asset

    @beta.asset(
        name="learning_snapshot_custom",
        partitions_def=p.custom,
        deps=[
            dg.AssetDep(daily_outcomes, partition_mapping=dg.AllPartitionMapping()),
            dg.AssetDep(confidence_calibration, partition_mapping=dg.AllPartitionMapping()),
        ],
        required_resource_keys=snapshots,
        group_name="snapshots",
        kinds={"json"},
        **io,
    )
    def learning_snapshot_custom(context: dg.AssetExecutionContext) -> Iterator[Any]:
        """CUSTOM snapshot of any window `START..END` (dynamic partition), summaries computed over that window."""
        yield from _learning_snapshot_custom(context, n.resources(context), p.monthly)

    return [
        snapshot("learning_snapshots_daily", "DAILY", p.daily, daily, p.daily),
        snapshot("learning_snapshots_weekly", "WEEKLY", p.weekly, weekly, p.weekly),
        snapshot("learning_snapshots_monthly", "MONTHLY", p.monthly, daily, p.daily),
        learning_snapshot_custom,
    ]
