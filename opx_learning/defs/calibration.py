"""The confidence calibration: each calendar month, custom windows, and the month-by-month drift (docs/calibration.md).

A calibration is a guarded, audited CALIBRATION over the window's outcomes; fewer than 30
outcomes with a confidence fail INSUFFICIENT_DATA. `drift_metrics` is derived from the
stored months (no new learning, not audited again); custom windows feed no drift series.
"""

from collections.abc import Iterator, Mapping
from typing import Any

import dagster as dg
import polars as pl

from opx_learning.core.calibration import (
    Calibration,
    InsufficientData,
    calibrate,
    drift_metrics,
)
from opx_learning.core.schema import CALIBRATION_MIN_OUTCOMES
from opx_learning.core.windows import Window, iso
from opx_learning.defs import beta
from opx_learning.defs.calibration_views import calibration_views
from opx_learning.defs.location import Location
from opx_learning.defs.operations import (
    InsufficientInput,
    Produced,
    missing_upstream,
    run_operation,
)
from opx_learning.defs.outcomes import scan_window_outcomes
from opx_learning.defs.partitions import custom_window, partition_window
from opx_learning.defs.shared import (
    FRESHNESS,
    PER_PARTITION,
    asset_options,
    custom_parameters,
    previous_month,
    range_parameters,
)


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

    parameters = range_parameters(context, "MONTHLY")
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
    yield from run_operation(context, None, storage, "CALIBRATION", range_parameters(context, "MONTHLY"), work)


_DRIFT_METADATA = ("ece", "max_abs_drift", "drift", "change_ece", "change_max_abs_drift", "change_drift")


def _confidence_calibration_custom(context: dg.AssetExecutionContext, r: Any) -> Iterator[Any]:
    key = context.partition_key
    window = custom_window(key)

    def work() -> Produced:
        outcomes = scan_window_outcomes(r.asset_storage, r.outcome_store, window)
        result = _calibrate_window(outcomes, window, key, "window")
        return Produced({key: result.to_dict()}, {key: calibration_metadata(result)}, calibration_results([result]))

    yield from run_operation(context, r.safety, r.asset_storage, "CALIBRATION", custom_parameters(window), work)


def build_calibration(
    loc: Location, daily_outcomes: dg.AssetsDefinition
) -> tuple[dg.AssetsDefinition, dg.AssetsDefinition, dg.AssetsDefinition]:
    """The monthly and custom calibrations and the drift metrics of one location, reading `daily_outcomes`."""
    p, n = loc.partitions, loc.names
    io = asset_options(n)
    guarded = n.required("outcome_store", "asset_storage", "safety")

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
        deps=[dg.AssetDep(confidence_calibration, partition_mapping=previous_month())],
        freshness_policy=FRESHNESS["drift_metrics"],
        required_resource_keys=n.required("asset_storage"),
        group_name="calibration",
        kinds={"polars", "parquet"},
        **io,
    )
    def drift_metrics_asset(context: dg.AssetExecutionContext) -> Iterator[Any]:
        """Month-by-month calibration drift (ECE, max |drift|, per band) with the change against the previous month."""
        yield from _drift_metrics(context, n.resources(context), p.monthly)

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

    return confidence_calibration, confidence_calibration_custom, drift_metrics_asset
