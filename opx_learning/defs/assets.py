"""The learning operations as partitioned software-defined assets (SPEC §0, §7).

Graph: `daily_outcomes` -> `pattern_summaries_daily` / `pattern_summaries_weekly` /
`confidence_calibration` -> `drift_metrics`; snapshots (`learning_snapshots_daily`,
`_weekly`, `_monthly`, `learning_snapshot_custom`) hold the summaries of their window
and the latest calibration known at the window's end. On demand, any window (SPEC §0
"any date range") is one dynamic partition `START..END` of `pattern_summaries_custom`
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
from opx_learning.defs.operations import (
    InsufficientInput,
    Produced,
    missing_upstream,
    run_operation,
)
from opx_learning.defs.partitions import (
    custom_partitions,
    custom_window,
    daily_partitions,
    monthly_partitions,
    partition_window,
    to_window,
    weekly_partitions,
)
from opx_learning.defs.snapshot_diffs import snapshot_diff_metadata
from opx_learning.resources.io_managers import AssetStorage
from opx_learning.resources.safety import SafetyResource
from opx_learning.resources.stores import OutcomeStoreResource, SnapshotStoreResource

SINGLE_RUN = dg.BackfillPolicy.single_run()
PER_PARTITION = dg.BackfillPolicy.multi_run(1)
REJECTED_OUTCOMES = "rejected_outcomes"

# Expected durations from the runbook, in milliseconds (checks and freshness use them).
EXPECTED_MS = {
    "pattern_summaries_daily": 2 * 60_000,
    "pattern_summaries_weekly": 5 * 60_000,
    "confidence_calibration": 10 * 60_000,
    "learning_snapshots_daily": 60_000,
    "learning_snapshots_weekly": 2 * 60_000,
    "learning_snapshots_monthly": 5 * 60_000,
}

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


def _window_check_spec(asset: str, partitions_def: dg.PartitionsDefinition) -> dg.AssetCheckSpec:
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


@beta.asset(
    partitions_def=daily_partitions,
    backfill_policy=SINGLE_RUN,
    freshness_policy=FRESHNESS["daily_outcomes"],
    output_required=False,
    group_name="outcomes",
    kinds={"polars", "parquet"},
)
def daily_outcomes(
    context: dg.AssetExecutionContext, outcome_store: OutcomeStoreResource, asset_storage: AssetStorage
) -> Iterator[Any]:
    """Validated outcomes of each UTC day from the outcome store; rejected rows kept beside them."""

    def work() -> Produced:
        # One read and one vectorised validation for the whole range, each day validated as if alone.
        days = outcome_store.store().read(to_window(context.partition_time_window))
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
                uri = asset_storage.write(REJECTED_OUTCOMES, key, result.rejected)
                meta["rejected_uri"] = dg.MetadataValue.path(uri)
                meta["rejected_by_field"] = dg.MetadataValue.json(result.counts())
            metadata[key] = meta
        total = sum(m["outcomes"] for m in metadata.values())
        rejected = sum(m["rejected"] for m in metadata.values())
        return Produced(values, metadata, {"outcomes": total, "rejected": rejected})

    # Read-only input stage, not a learning operation: not audited; the operations downstream are.
    yield from run_operation(context, None, asset_storage, "OUTCOME_VALIDATION", _range_parameters(context, "DAILY"), work)


@beta.asset(
    partitions_def=daily_partitions,
    backfill_policy=SINGLE_RUN,
    deps=[daily_outcomes],
    freshness_policy=FRESHNESS["pattern_summaries_daily"],
    check_specs=[_window_check_spec("pattern_summaries_daily", daily_partitions)],
    output_required=False,
    group_name="patterns",
    kinds={"polars", "parquet"},
)
def pattern_summaries_daily(
    context: dg.AssetExecutionContext,
    outcome_store: OutcomeStoreResource,
    asset_storage: AssetStorage,
    safety: SafetyResource,
) -> Iterator[Any]:
    """Per-service pattern summaries of each UTC day (emerging root causes against the earlier days)."""
    yield from _patterns(context, outcome_store, asset_storage, safety, daily_partitions, "DAILY")


@beta.asset(
    partitions_def=weekly_partitions,
    backfill_policy=SINGLE_RUN,
    deps=[daily_outcomes],
    freshness_policy=FRESHNESS["pattern_summaries_weekly"],
    check_specs=[_window_check_spec("pattern_summaries_weekly", weekly_partitions)],
    output_required=False,
    group_name="patterns",
    kinds={"polars", "parquet"},
)
def pattern_summaries_weekly(
    context: dg.AssetExecutionContext,
    outcome_store: OutcomeStoreResource,
    asset_storage: AssetStorage,
    safety: SafetyResource,
) -> Iterator[Any]:
    """Per-service pattern summaries of each Sunday-to-Sunday UTC week."""
    yield from _patterns(context, outcome_store, asset_storage, safety, weekly_partitions, "WEEKLY")


def _patterns(
    context: dg.AssetExecutionContext,
    outcome_store: OutcomeStoreResource,
    asset_storage: AssetStorage,
    safety: SafetyResource,
    partitions_def: dg.TimeWindowPartitionsDefinition,
    cadence: str,
) -> Iterator[Any]:
    def work() -> Produced:
        keys = context.partition_keys
        windows = {key: partition_window(partitions_def, key) for key in keys}
        first = windows[keys[0]]
        # One read covers the range plus the emerging root causes' baseline before it.
        outcomes = scan_window_outcomes(
            asset_storage, outcome_store, Window(baseline_reach(first).start, windows[keys[-1]].end)
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

    yield from run_operation(context, safety, asset_storage, "PATTERN_EXTRACTION", _range_parameters(context, cadence), work)


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


@beta.asset(
    partitions_def=monthly_partitions,
    backfill_policy=PER_PARTITION,
    deps=[daily_outcomes],
    freshness_policy=FRESHNESS["confidence_calibration"],
    output_required=False,
    group_name="calibration",
    kinds={"polars", "json"},
)
def confidence_calibration(
    context: dg.AssetExecutionContext,
    outcome_store: OutcomeStoreResource,
    asset_storage: AssetStorage,
    safety: SafetyResource,
) -> Iterator[Any]:
    """Confidence calibration of each calendar month by band, with drift and advisory recommendations."""

    def work() -> Produced:
        values, metadata, calibrations = {}, {}, []
        for key in context.partition_keys:
            window = partition_window(monthly_partitions, key)
            outcomes = scan_window_outcomes(asset_storage, outcome_store, window)
            result = _calibrate_window(outcomes, window, key, "month")
            calibrations.append(result)
            values[key] = result.to_dict()
            metadata[key] = calibration_metadata(result) | calibration_views(result, outcomes)
        results = calibration_results(calibrations)
        return Produced(values, metadata, results)

    yield from run_operation(context, safety, asset_storage, "CALIBRATION", _range_parameters(context, "MONTHLY"), work)


@beta.asset(
    name="drift_metrics",
    partitions_def=monthly_partitions,
    backfill_policy=PER_PARTITION,
    # The month and the month before: a backfill runs a month's drift only once both calibrations
    # are done, so parallel months never compute change columns from a month not yet written.
    # The first partition has no month before it (allowed; its change columns are null).
    deps=[
        dg.AssetDep(
            confidence_calibration,
            partition_mapping=beta.time_window_mapping(
                start_offset=-1, end_offset=0, allow_nonexistent_upstream_partitions=True
            ),
        )
    ],
    freshness_policy=FRESHNESS["drift_metrics"],
    output_required=False,
    group_name="calibration",
    kinds={"polars", "parquet"},
)
def drift_metrics_asset(context: dg.AssetExecutionContext, asset_storage: AssetStorage) -> Iterator[Any]:
    """Month-by-month calibration drift (ECE, max |drift|, per band) with the change against the previous month."""

    def work() -> Produced:
        stored = {key: asset_storage.read("confidence_calibration", key) for key in context.partition_keys}
        missing = [key for key, value in stored.items() if not isinstance(value, Mapping)]
        if missing:
            error = missing_upstream("confidence_calibration", missing, "calibrate those months first")
            raise dg.Failure(description=f"not computed ({error.reason}): {error}", metadata=error.metadata)
        values, metadata = {}, {}
        for key in context.partition_keys:
            current = Calibration.from_dict(stored[key])
            previous = monthly_partitions.get_prev_partition_window(current.window_start)
            before = (
                asset_storage.read("confidence_calibration", previous.start.strftime("%Y-%m-%d"))
                if previous
                else None
            )
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
    yield from run_operation(context, None, asset_storage, "CALIBRATION", _range_parameters(context, "MONTHLY"), work)


_DRIFT_METADATA = ("ece", "max_abs_drift", "drift", "change_ece", "change_max_abs_drift", "change_drift")


def _snapshot_asset(
    name: str,
    snapshot_type: str,
    partitions_def: dg.TimeWindowPartitionsDefinition,
    summaries_asset: dg.AssetsDefinition,
    summaries_partitions: dg.TimeWindowPartitionsDefinition,
) -> dg.AssetsDefinition:
    summaries_name = summaries_asset.key.to_user_string()
    cadence = "--type weekly" if summaries_partitions is weekly_partitions else "--type daily"

    @beta.asset(
        name=name,
        partitions_def=partitions_def,
        backfill_policy=SINGLE_RUN,
        deps=[
            summaries_asset,
            dg.AssetDep(
                "confidence_calibration",
                partition_mapping=beta.time_window_mapping(
                    start_offset=-1, end_offset=0, allow_nonexistent_upstream_partitions=True
                ),
            )
        ],
        freshness_policy=FRESHNESS[name],
        output_required=False,
        group_name="snapshots",
        kinds={"json"},
        description=f"Immutable, versioned {snapshot_type.lower()} snapshot of the learned state "
        "(summaries of the window, latest calibration known at its end).",
    )
    def _asset(
        context: dg.AssetExecutionContext,
        outcome_store: OutcomeStoreResource,
        asset_storage: AssetStorage,
        snapshot_store: SnapshotStoreResource,
        safety: SafetyResource,
    ) -> Iterator[Any]:
        def work() -> Produced:
            windows = {key: partition_window(partitions_def, key) for key in context.partition_keys}
            span = Window(min(w.start for w in windows.values()), max(w.end for w in windows.values()))
            needed = summaries_partitions.get_partition_keys_in_time_window(dg.TimeWindow(span.start, span.end))
            # Every stored summary of the span in one Parquet scan (a month's snapshot needs its days).
            sources = asset_storage.parquet_sources(summaries_name, needed)
            missing = [key for key in needed if key not in sources]
            if missing:
                hint = (
                    f"run `opx-learning trigger extract-patterns {cadence} --start {span.start_iso} "
                    f"--end {span.end_iso}` first"
                )
                raise missing_upstream(summaries_name, missing, hint)
            return _snapshots(
                snapshot_type, windows, span, _by_window(pl.scan_parquet(list(sources.values())).collect(), windows),
                outcome_store, asset_storage,
                snapshot_store,
            )

        parameters = _range_parameters(context, snapshot_type, snapshot_type=snapshot_type)
        yield from run_operation(context, safety, asset_storage, "SNAPSHOT", parameters, work)

    return _asset


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


def known_calibrations(asset_storage: AssetStorage, until: Window) -> list[dict[str, Any]]:
    """Stored calibrations of the 13 months before `until.end` (the candidates for "latest known")."""
    months = monthly_partitions.get_partition_keys_in_time_window(
        dg.TimeWindow(until.start - timedelta(days=400), until.end)
    )
    found = [asset_storage.read("confidence_calibration", key) for key in months]
    return [item for item in found if isinstance(item, Mapping)]


def _snapshots(
    snapshot_type: str,
    windows: dict[str, Window],
    span: Window,
    summaries: Mapping[str, pl.DataFrame],
    outcome_store: OutcomeStoreResource,
    asset_storage: AssetStorage,
    snapshot_store: SnapshotStoreResource,
) -> Produced:
    outcomes = (
        scan_window_outcomes(asset_storage, outcome_store, span).select("outcome_id", "service", "recorded_at").collect()
    )
    calibrations = prepare_calibrations(known_calibrations(asset_storage, span))
    store = snapshot_store.store()
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


learning_snapshots_daily = _snapshot_asset(
    "learning_snapshots_daily", "DAILY", daily_partitions, pattern_summaries_daily, daily_partitions
)
learning_snapshots_weekly = _snapshot_asset(
    "learning_snapshots_weekly", "WEEKLY", weekly_partitions, pattern_summaries_weekly, weekly_partitions
)
learning_snapshots_monthly = _snapshot_asset(
    "learning_snapshots_monthly", "MONTHLY", monthly_partitions, pattern_summaries_daily, daily_partitions
)


@dg.asset(
    partitions_def=custom_partitions,
    deps=[
        dg.AssetDep(daily_outcomes, partition_mapping=dg.AllPartitionMapping()),
        dg.AssetDep("confidence_calibration", partition_mapping=dg.AllPartitionMapping()),
    ],
    output_required=False,
    group_name="snapshots",
    kinds={"json"},
)
def learning_snapshot_custom(
    context: dg.AssetExecutionContext,
    outcome_store: OutcomeStoreResource,
    asset_storage: AssetStorage,
    snapshot_store: SnapshotStoreResource,
    safety: SafetyResource,
) -> Iterator[Any]:
    """CUSTOM snapshot of any window `START..END` (dynamic partition), summaries computed over that window."""
    window = custom_window(context.partition_key)

    def work() -> Produced:
        outcomes = scan_window_outcomes(asset_storage, outcome_store, baseline_reach(window))
        summaries = extract_patterns_windows(outcomes, [window])
        produced = _snapshots(
            "CUSTOM",
            {context.partition_key: window},
            window,
            {context.partition_key: summaries},
            outcome_store,
            asset_storage,
            snapshot_store,
        )
        produced.metadata[context.partition_key].update(summary_metadata(summaries))
        return produced

    yield from run_operation(context, safety, asset_storage, "SNAPSHOT", _custom_parameters(window, snapshot_type="CUSTOM"), work)


def _custom_parameters(window: Window, **extra: Any) -> dict[str, Any]:
    return {"start_date": window.start_iso, "end_date": window.end_iso, "time_window": "CUSTOM", **extra}


@dg.asset(
    partitions_def=custom_partitions,
    deps=[dg.AssetDep(daily_outcomes, partition_mapping=dg.AllPartitionMapping())],
    check_specs=[_window_check_spec("pattern_summaries_custom", custom_partitions)],
    output_required=False,
    group_name="patterns",
    kinds={"polars", "parquet"},
)
def pattern_summaries_custom(
    context: dg.AssetExecutionContext,
    outcome_store: OutcomeStoreResource,
    asset_storage: AssetStorage,
    safety: SafetyResource,
) -> Iterator[Any]:
    """Per-service pattern summaries of any window `START..END` (dynamic partition), one extraction over it.

    Emerging root causes are tested against the earlier windows of the same length (core/emerging.py).
    """
    key = context.partition_key
    window = custom_window(key)

    def work() -> Produced:
        outcomes = scan_window_outcomes(asset_storage, outcome_store, baseline_reach(window))
        summary = extract_patterns_windows(outcomes, [window])
        metadata = summary_metadata(summary)
        results = {"summary_count": summary.height, "total_incidents": metadata["total_incidents"]}
        return Produced({key: summary}, {key: metadata}, results, checks={key: [window_check(metadata, key, "CUSTOM")]})

    yield from run_operation(context, safety, asset_storage, "PATTERN_EXTRACTION", _custom_parameters(window), work)


@dg.asset(
    partitions_def=custom_partitions,
    deps=[dg.AssetDep(daily_outcomes, partition_mapping=dg.AllPartitionMapping())],
    output_required=False,
    group_name="calibration",
    kinds={"polars", "json"},
)
def confidence_calibration_custom(
    context: dg.AssetExecutionContext,
    outcome_store: OutcomeStoreResource,
    asset_storage: AssetStorage,
    safety: SafetyResource,
) -> Iterator[Any]:
    """Confidence calibration of any window `START..END` (dynamic partition); under 30 outcomes it FAILs.

    The failure is INSUFFICIENT_DATA, as for a month; custom windows feed no drift series.
    """
    key = context.partition_key
    window = custom_window(key)

    def work() -> Produced:
        result = _calibrate_window(scan_window_outcomes(asset_storage, outcome_store, window), window, key, "window")
        results = calibration_results([result])
        metadata = calibration_metadata(result)
        return Produced({key: result.to_dict()}, {key: metadata}, results)

    yield from run_operation(context, safety, asset_storage, "CALIBRATION", _custom_parameters(window), work)


ASSETS = [
    daily_outcomes,
    pattern_summaries_daily,
    pattern_summaries_weekly,
    pattern_summaries_custom,
    confidence_calibration,
    confidence_calibration_custom,
    drift_metrics_asset,
    learning_snapshots_daily,
    learning_snapshots_weekly,
    learning_snapshots_monthly,
    learning_snapshot_custom,
]
