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
"""

import itertools
from collections.abc import Iterator, Mapping
from datetime import date, timedelta
from typing import Any

import dagster as dg
import polars as pl

from opx_learning.core.calibration import (
    Calibration,
    InsufficientData,
    calibrate,
    drift_metrics,
)
from opx_learning.core.emerging import baseline_reach
from opx_learning.core.patterns import extract_patterns_windows
from opx_learning.core.schema import (
    ALL_SERVICES,
    CALIBRATION_MIN_OUTCOMES,
    OUTCOME_SCHEMA,
    empty_outcomes,
)
from opx_learning.core.snapshots import build_snapshot, prepare_calibrations
from opx_learning.core.validation import validate_outcomes, validate_outcomes_by
from opx_learning.core.windows import Window, day_window, iso
from opx_learning.defs import beta
from opx_learning.defs.calibration_views import calibration_views
from opx_learning.defs.location import IO_MANAGER, Location, Partitions
from opx_learning.defs.operations import (
    InsufficientInput,
    Produced,
    missing_upstream,
    run_operation,
)
from opx_learning.defs.partitions import custom_window, partition_window, to_window
from opx_learning.defs.snapshot_diffs import snapshot_diff_metadata
from opx_learning.resources.io_managers import AssetStorage
from opx_learning.resources.stores import OutcomeStoreResource

SINGLE_RUN = dg.BackfillPolicy.single_run()
PER_PARTITION = dg.BackfillPolicy.multi_run(1)
REJECTED_OUTCOMES = "rejected_outcomes"

# The UTC day of an outcome as a daily partition key, while a range of days is validated at once.
DAY = "__day"


def _fresh(cron_minute: int, hour: int, day: str, weekday: str, minutes: int) -> dg.FreshnessPolicy:
    return dg.FreshnessPolicy.cron(
        deadline_cron=f"{cron_minute} {hour} {day} * {weekday}", lower_bound_delta=timedelta(minutes=minutes)
    )


FRESHNESS = {
    "daily_outcomes": _fresh(2, 0, "*", "*", 2),
    "pattern_summaries_daily": _fresh(2, 0, "*", "*", 2),
    "pattern_summaries_weekly": _fresh(5, 0, "*", "0", 5),
    "confidence_calibration": _fresh(10, 0, "1", "*", 10),
    "drift_metrics": _fresh(11, 0, "1", "*", 11),
    "learning_snapshots_daily": _fresh(1, 1, "*", "*", 1),
    "learning_snapshots_weekly": _fresh(2, 1, "*", "0", 2),
    "learning_snapshots_monthly": _fresh(5, 1, "1", "*", 5),
}


def scan_window_outcomes(storage: AssetStorage, store: OutcomeStoreResource, window: Window) -> pl.LazyFrame:
    """Valid outcomes of `window`, lazily: materialized `daily_outcomes` per day, else the store validated.

    The materialized days are scanned, not read: a query reads only the columns it uses.
    Days come in order (each day's rows as stored, sorted by `recorded_at`).
    """
    days = [day.isoformat() for day in window.days()]
    stored = storage.parquet_sources("daily_outcomes", days)
    parts: list[pl.LazyFrame] = []
    outcome_store = None
    # Consecutive stored days are one scan; consecutive missing days one store read and one validation.
    for is_stored, group in itertools.groupby(days, key=lambda day: day in stored):
        keys = list(group)
        if is_stored:
            scan = pl.scan_parquet([stored[key] for key in keys], hive_partitioning=False)
            parts.append(scan.select([pl.col(c).cast(OUTCOME_SCHEMA[c]) for c in OUTCOME_SCHEMA]))
        else:
            outcome_store = outcome_store or store.store()
            span = Window(day_window(date.fromisoformat(keys[0])).start, day_window(date.fromisoformat(keys[-1])).end)
            valid = validate_outcomes(outcome_store.read(span)).valid
            parts.append(valid.sort("recorded_at", maintain_order=True).lazy())
    frame = pl.concat(parts, how="vertical") if parts else empty_outcomes().lazy()
    recorded = pl.col("recorded_at")
    return frame.filter((recorded >= window.start) & (recorded < window.end))


def read_outcomes(storage: AssetStorage, store: OutcomeStoreResource, window: Window) -> pl.DataFrame:
    """Valid outcomes of `window` as a DataFrame (`scan_window_outcomes` collected)."""
    return scan_window_outcomes(storage, store, window).collect()


def _top_causes_table(summary: pl.DataFrame) -> str:
    rows = summary.filter(pl.col("service") == ALL_SERVICES)
    causes = rows["top_root_causes"][0].to_list() if rows.height else []
    lines = ["| root cause | count | share |", "|---|---:|---:|"]
    lines += [f"| {item['value']} | {item['count']} | {item['share']:.1%} |" for item in causes[:10]]
    return "\n".join(lines) if causes else "no outcomes in the window"


def summary_metadata(summary: pl.DataFrame) -> dict[str, Any]:
    """Materialization metadata of one window's pattern summaries."""
    services = [s for s in summary["service"].to_list() if s != ALL_SERVICES]
    overall = summary.filter(pl.col("service") == ALL_SERVICES).to_dicts()
    total = overall[0] if overall else {}
    warnings = summary.filter(pl.col("detection_warning") & (pl.col("service") != ALL_SERVICES))["service"]
    emerging = summary.filter(pl.col("service") == ALL_SERVICES)["emerging_root_causes"]
    return {
        "services": len(services),
        "service_names": ", ".join(services) or "-",
        "total_incidents": int(total.get("total_incidents") or 0),
        "false_positives": int(total.get("false_positives") or 0),
        "fp_rate": dg.MetadataValue.float(float(total["fp_rate"]) if total.get("fp_rate") is not None else 0.0),
        "detection_warnings": ", ".join(warnings.to_list()) or "-",
        "emerging_root_causes": len(emerging[0]) if emerging.len() else 0,
        # Earlier windows with outcomes behind the emerging test (4 = full baseline).
        "emerging_baseline_windows": int(total.get("emerging_baseline_windows") or 0),
        "top_root_causes": dg.MetadataValue.md(_top_causes_table(summary)),
        # No outcome at all in the window: the summaries are the zero "ALL" row (WARN `window_has_outcomes`).
        "empty_window": dg.MetadataValue.bool(not total.get("total_incidents")),
    }


WINDOW_CHECK = "window_has_outcomes"
_WINDOW_CHECK_TEXT = (
    "The window holds outcomes (WARN when it holds none: the summaries are zeros, e.g. an ingestion gap). "
    "Evaluated by the extraction itself, one result per partition stored."
)


def _window_check_spec(asset: dg.AssetKey, partitions_def: dg.PartitionsDefinition) -> dg.AssetCheckSpec:
    return beta.asset_check_spec(WINDOW_CHECK, asset=asset, partitions_def=partitions_def, description=_WINDOW_CHECK_TEXT)


def window_check(metadata: Mapping[str, Any], key: str, cadence: str) -> dg.AssetCheckResult:
    """WARN `window_has_outcomes` of one partition's summaries: no outcome at all in its window."""
    outcomes = int(metadata["total_incidents"])
    empty = outcomes == 0
    where = f"{cadence.lower()} window {key}"
    text = f"no outcomes in the {where}: its summaries are zeros" if empty else f"{outcomes} outcomes in the {where}"
    return dg.AssetCheckResult(
        check_name=WINDOW_CHECK,
        passed=not empty,
        severity=dg.AssetCheckSeverity.WARN,
        description=text,
        metadata={"empty_window": empty, "outcomes": outcomes, "partition": key},
    )


def _range_parameters(context: dg.AssetExecutionContext, time_window: str, **extra: Any) -> dict[str, Any]:
    window = to_window(context.partition_time_window)
    return {"start_date": window.start_iso, "end_date": window.end_iso, "time_window": time_window, **extra}


def _daily_outcomes(context: dg.AssetExecutionContext, r: Any) -> Iterator[Any]:
    def work() -> Produced:
        # One read and one vectorised validation for the whole range, each day validated as if alone.
        days = r.outcome_store.store().read(to_window(context.partition_time_window))
        by_day = validate_outcomes_by(days.with_columns(pl.col("recorded_at").dt.strftime("%Y-%m-%d").alias(DAY)), DAY)
        nothing = validate_outcomes(days.clear())
        values, metadata = {}, {}
        for key in context.partition_keys:
            result = by_day.get(key, nothing)
            values[key] = result.valid
            meta: dict[str, Any] = {
                "outcomes": result.valid.height,
                "rejected": result.rejected.height,
                "services": result.valid["service"].n_unique(),
            }
            if result.rejected.height:
                uri = r.asset_storage.write(REJECTED_OUTCOMES, key, result.rejected)
                meta["rejected_uri"] = dg.MetadataValue.path(uri)
                meta["rejected_by_field"] = dg.MetadataValue.json(result.counts())
            metadata[key] = meta
        total = sum(m["outcomes"] for m in metadata.values())
        rejected = sum(m["rejected"] for m in metadata.values())
        return Produced(values, metadata, {"outcomes": total, "rejected": rejected})

    # Read-only input stage, not a learning operation: not audited; the operations downstream are.
    parameters = _range_parameters(context, "DAILY")
    yield from run_operation(context, None, r.asset_storage, "OUTCOME_VALIDATION", parameters, work)


def _patterns(
    context: dg.AssetExecutionContext, r: Any, partitions_def: dg.TimeWindowPartitionsDefinition, cadence: str
) -> Iterator[Any]:
    def work() -> Produced:
        keys = context.partition_keys
        windows = {key: partition_window(partitions_def, key) for key in keys}
        first = windows[keys[0]]
        # One read covers the range plus the emerging root causes' baseline before it.
        outcomes = scan_window_outcomes(
            r.asset_storage, r.outcome_store, Window(baseline_reach(first).start, windows[keys[-1]].end)
        )
        summaries = extract_patterns_windows(outcomes, list(windows.values()))
        # One split of the range's rows by window, not a filter of all of them per window.
        by_start = summaries.partition_by("window_start", as_dict=True, maintain_order=True)
        values, metadata = {}, {}
        for key, window in windows.items():
            values[key] = by_start.get((window.start,), summaries.clear())
            metadata[key] = summary_metadata(values[key])
        results = {
            "summary_count": sum(len(v) for v in values.values()),
            "total_incidents": sum(m["total_incidents"] for m in metadata.values()),
        }
        checks = {key: [window_check(metadata[key], key, cadence)] for key in keys}
        return Produced(values, metadata, results, checks=checks)

    parameters = _range_parameters(context, cadence)
    yield from run_operation(context, r.safety, r.asset_storage, "PATTERN_EXTRACTION", parameters, work)


def calibration_metadata(calibration: Calibration) -> dict[str, Any]:
    """Materialization metadata of one calibration (drift, ECE, bands, recommendations)."""
    bands = calibration.bands
    table = ["| band | n | accuracy | mean confidence | drift | severity |", "|---|---:|---:|---:|---:|---|"]
    for row in bands.iter_rows(named=True):
        table.append(
            f"| {row['band']} | {row['n']} | {_fmt(row['accuracy'])} | {_fmt(row['mean_confidence'])} "
            f"| {_fmt(row['drift'], signed=True)} | {row['severity']} |"
        )
    advice = "\n".join(f"- {r['band']}: {r['message']} ({r['severity']})" for r in calibration.recommendations)
    return {
        "outcome_count": calibration.outcome_count,
        "skipped_count": calibration.skipped_count,
        "ece": dg.MetadataValue.float(calibration.ece),
        "mce": dg.MetadataValue.float(calibration.mce),
        "brier": dg.MetadataValue.float(calibration.brier),
        "max_abs_drift": dg.MetadataValue.float(calibration.max_abs_drift),
        "drift": dg.MetadataValue.float(calibration.drift),
        "drift_detected": dg.MetadataValue.bool(calibration.drift_detected),
        "calibration_id": calibration.calibration_id,
        "bands": dg.MetadataValue.md("\n".join(table)),
        "recommendations": dg.MetadataValue.md(advice or "-"),
        "recommended_thresholds": dg.MetadataValue.json(dict(calibration.recommended_thresholds)),
    }


def _calibrate_window(outcomes: pl.DataFrame | pl.LazyFrame, window: Window, key: str, label: str) -> Calibration:
    try:
        return calibrate(outcomes, window.start, window.end, min_outcomes=CALIBRATION_MIN_OUTCOMES)
    except InsufficientData as error:
        raise InsufficientInput(
            f"{key}: {error}",
            "INSUFFICIENT_DATA",
            {"outcome_count": error.outcome_count, "required": error.required, label: key},
        ) from None


def calibration_results(calibrations: list[Calibration]) -> dict[str, Any]:
    """Audit results of a calibration run: ids, counts and the most drifted window's bands (alerts read them)."""
    worst = max(calibrations, key=lambda c: c.max_abs_drift)
    bands = worst.bands.select("band", "drift", "n", "sufficient")
    ranked = bands.filter(pl.col("sufficient")).with_columns(size=pl.col("drift").abs())
    ranked = ranked.sort("size", descending=True, maintain_order=True)
    return {
        "calibration_ids": [c.calibration_id for c in calibrations],
        "outcome_count": sum(c.outcome_count for c in calibrations),
        "skipped_count": sum(c.skipped_count for c in calibrations),
        "drift": worst.drift,
        "max_abs_drift": worst.max_abs_drift,
        "drift_band": ranked["band"][0] if ranked.height else None,
        "drift_window_start": iso(worst.window_start),
        "bands": bands.to_dicts(),
        "windows": [
            {"window_start": iso(c.window_start), "max_abs_drift": c.max_abs_drift, "drift": c.drift}
            for c in calibrations
        ],
    }


def _fmt(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def _confidence_calibration(
    context: dg.AssetExecutionContext, r: Any, monthly: dg.TimeWindowPartitionsDefinition
) -> Iterator[Any]:
    def work() -> Produced:
        values, metadata, calibrations = {}, {}, []
        for key in context.partition_keys:
            window = partition_window(monthly, key)
            outcomes = scan_window_outcomes(r.asset_storage, r.outcome_store, window)
            result = _calibrate_window(outcomes, window, key, "month")
            calibrations.append(result)
            values[key] = result.to_dict()
            metadata[key] = calibration_metadata(result) | calibration_views(result, outcomes)
        results = calibration_results(calibrations)
        return Produced(values, metadata, results)

    parameters = _range_parameters(context, "MONTHLY")
    yield from run_operation(context, r.safety, r.asset_storage, "CALIBRATION", parameters, work)


def _drift_metrics(context: dg.AssetExecutionContext, r: Any, monthly: dg.TimeWindowPartitionsDefinition) -> Iterator[Any]:
    storage = r.asset_storage

    def work() -> Produced:
        stored = {key: storage.read("confidence_calibration", key) for key in context.partition_keys}
        missing = [key for key, value in stored.items() if not isinstance(value, Mapping)]
        if missing:
            error = missing_upstream("confidence_calibration", missing, "calibrate those months first")
            raise dg.Failure(description=f"not computed ({error.reason}): {error}", metadata=error.metadata)
        values, metadata = {}, {}
        for key in context.partition_keys:
            current = Calibration.from_dict(stored[key])
            previous = monthly.get_prev_partition_window(current.window_start)
            before = storage.read("confidence_calibration", previous.start.strftime("%Y-%m-%d")) if previous else None
            series = [Calibration.from_dict(before)] if isinstance(before, Mapping) else []
            row = drift_metrics([*series, current]).tail(1)
            values[key] = row
            metadata[key] = {"previous_month_available": dg.MetadataValue.bool(bool(series))} | {
                name: dg.MetadataValue.float(float(value)) if value is not None else dg.MetadataValue.null()
                for name, value in row.to_dicts()[0].items()
                if name in _DRIFT_METADATA
            }
        return Produced(values, metadata)

    # Derived from the month's (guarded, audited) calibration: no new learning, not audited again.
    yield from run_operation(context, None, storage, "CALIBRATION", _range_parameters(context, "MONTHLY"), work)


_DRIFT_METADATA = ("ece", "max_abs_drift", "drift", "change_ece", "change_max_abs_drift", "change_drift")


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

    parameters = _range_parameters(context, snapshot_type, snapshot_type=snapshot_type)
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

    parameters = _custom_parameters(window, snapshot_type="CUSTOM")
    yield from run_operation(context, r.safety, r.asset_storage, "SNAPSHOT", parameters, work)


def _custom_parameters(window: Window, **extra: Any) -> dict[str, Any]:
    return {"start_date": window.start_iso, "end_date": window.end_iso, "time_window": "CUSTOM", **extra}


def _pattern_summaries_custom(context: dg.AssetExecutionContext, r: Any) -> Iterator[Any]:
    key = context.partition_key
    window = custom_window(key)

    def work() -> Produced:
        outcomes = scan_window_outcomes(r.asset_storage, r.outcome_store, baseline_reach(window))
        summary = extract_patterns_windows(outcomes, [window])
        metadata = summary_metadata(summary)
        results = {"summary_count": summary.height, "total_incidents": metadata["total_incidents"]}
        return Produced({key: summary}, {key: metadata}, results, checks={key: [window_check(metadata, key, "CUSTOM")]})

    yield from run_operation(context, r.safety, r.asset_storage, "PATTERN_EXTRACTION", _custom_parameters(window), work)


def _confidence_calibration_custom(context: dg.AssetExecutionContext, r: Any) -> Iterator[Any]:
    key = context.partition_key
    window = custom_window(key)

    def work() -> Produced:
        outcomes = scan_window_outcomes(r.asset_storage, r.outcome_store, window)
        result = _calibrate_window(outcomes, window, key, "window")
        return Produced({key: result.to_dict()}, {key: calibration_metadata(result)}, calibration_results([result]))

    yield from run_operation(context, r.safety, r.asset_storage, "CALIBRATION", _custom_parameters(window), work)


def _previous_month() -> dg.TimeWindowPartitionMapping:
    return beta.time_window_mapping(start_offset=-1, end_offset=0, allow_nonexistent_upstream_partitions=True)


def build_assets(loc: Location) -> list[dg.AssetsDefinition]:
    """The learning assets of one location (its partitions, names and resource keys)."""
    p, n = loc.partitions, loc.names
    io = {"key_prefix": n.key_prefix, "io_manager_key": n(IO_MANAGER), "output_required": False}
    reads = n.required("outcome_store", "asset_storage")
    guarded = n.required("outcome_store", "asset_storage", "safety")
    snapshots = n.required("outcome_store", "asset_storage", "safety", "snapshot_store")

    @beta.asset(
        name="daily_outcomes",
        partitions_def=p.daily,
        backfill_policy=SINGLE_RUN,
        freshness_policy=FRESHNESS["daily_outcomes"],
        required_resource_keys=reads,
        group_name="outcomes",
        kinds={"polars", "parquet"},
        **io,
    )
    def daily_outcomes(context: dg.AssetExecutionContext) -> Iterator[Any]:
        """Validated outcomes of each UTC day from the outcome store; rejected rows kept beside them."""
        yield from _daily_outcomes(context, n.resources(context))

    def patterns(name: str, partitions_def: dg.TimeWindowPartitionsDefinition, cadence: str, text: str) -> Any:
        @beta.asset(
            name=name,
            partitions_def=partitions_def,
            backfill_policy=SINGLE_RUN,
            deps=[daily_outcomes],
            freshness_policy=FRESHNESS[name],
            check_specs=[_window_check_spec(n.key(name), partitions_def)],
            required_resource_keys=guarded,
            group_name="patterns",
            kinds={"polars", "parquet"},
            description=text,
            **io,
        )
        def _asset(context: dg.AssetExecutionContext) -> Iterator[Any]:
            yield from _patterns(context, n.resources(context), partitions_def, cadence)

        return _asset

    daily = patterns(
        "pattern_summaries_daily", p.daily, "DAILY",
        "Per-service pattern summaries of each UTC day (emerging root causes against the earlier days).",
    )
    weekly = patterns(
        "pattern_summaries_weekly", p.weekly, "WEEKLY", "Per-service pattern summaries of each Sunday-to-Sunday UTC week."
    )

    @beta.asset(
        name="confidence_calibration",
        partitions_def=p.monthly,
        backfill_policy=PER_PARTITION,
        deps=[daily_outcomes],
        freshness_policy=FRESHNESS["confidence_calibration"],
        required_resource_keys=guarded,
        group_name="calibration",
        kinds={"polars", "json"},
        **io,
    )
    def confidence_calibration(context: dg.AssetExecutionContext) -> Iterator[Any]:
        """Confidence calibration of each calendar month by band, with drift and advisory recommendations."""
        yield from _confidence_calibration(context, n.resources(context), p.monthly)

    @beta.asset(
        name="drift_metrics",
        partitions_def=p.monthly,
        backfill_policy=PER_PARTITION,
        # The month and the month before: a backfill runs a month's drift only once both calibrations
        # are done, so parallel months never compute change columns from a month not yet written.
        # The first partition has no month before it (allowed; its change columns are null).
        deps=[dg.AssetDep(confidence_calibration, partition_mapping=_previous_month())],
        freshness_policy=FRESHNESS["drift_metrics"],
        required_resource_keys=n.required("asset_storage"),
        group_name="calibration",
        kinds={"polars", "parquet"},
        **io,
    )
    def drift_metrics_asset(context: dg.AssetExecutionContext) -> Iterator[Any]:
        """Month-by-month calibration drift (ECE, max |drift|, per band) with the change against the previous month."""
        yield from _drift_metrics(context, n.resources(context), p.monthly)

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
            deps=[summaries, dg.AssetDep(confidence_calibration, partition_mapping=_previous_month())],
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

    @beta.asset(
        name="pattern_summaries_custom",
        partitions_def=p.custom,
        deps=[dg.AssetDep(daily_outcomes, partition_mapping=dg.AllPartitionMapping())],
        check_specs=[_window_check_spec(n.key("pattern_summaries_custom"), p.custom)],
        required_resource_keys=guarded,
        group_name="patterns",
        kinds={"polars", "parquet"},
        **io,
    )
    def pattern_summaries_custom(context: dg.AssetExecutionContext) -> Iterator[Any]:
        """Per-service pattern summaries of any window `START..END` (dynamic partition), one extraction over it.

        Emerging root causes are tested against the earlier windows of the same length (core/emerging.py).
        """
        yield from _pattern_summaries_custom(context, n.resources(context))

    @beta.asset(
        name="confidence_calibration_custom",
        partitions_def=p.custom,
        deps=[dg.AssetDep(daily_outcomes, partition_mapping=dg.AllPartitionMapping())],
        required_resource_keys=guarded,
        group_name="calibration",
        kinds={"polars", "json"},
        **io,
    )
    def confidence_calibration_custom(context: dg.AssetExecutionContext) -> Iterator[Any]:
        """Confidence calibration of any window `START..END` (dynamic partition); under 30 outcomes it FAILs.

        The failure is INSUFFICIENT_DATA, as for a month; custom windows feed no drift series.
        """
        yield from _confidence_calibration_custom(context, n.resources(context))

    return [
        daily_outcomes,
        daily,
        weekly,
        pattern_summaries_custom,
        confidence_calibration,
        confidence_calibration_custom,
        drift_metrics_asset,
        snapshot("learning_snapshots_daily", "DAILY", p.daily, daily, p.daily),
        snapshot("learning_snapshots_weekly", "WEEKLY", p.weekly, weekly, p.weekly),
        snapshot("learning_snapshots_monthly", "MONTHLY", p.monthly, daily, p.daily),
        learning_snapshot_custom,
    ]
