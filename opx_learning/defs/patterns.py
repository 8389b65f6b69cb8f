"""The pattern summaries: daily, weekly (Sunday to Sunday) and custom windows (docs/assets.md).

Each extraction is a guarded, audited PATTERN_EXTRACTION over the window's outcomes; the
emerging root causes are tested against the windows before it (core/emerging.py). The
summaries evaluate their own WARN check `window_has_outcomes` per partition stored (a window
without any outcome: `empty_window: true` in its metadata).
"""

from collections.abc import Iterator, Mapping
from typing import Any

import dagster as dg
import polars as pl

from opx_learning.core.emerging import baseline_reach
from opx_learning.core.patterns import extract_patterns_windows
from opx_learning.core.schema import ALL_SERVICES
from opx_learning.core.windows import Window
from opx_learning.defs import beta
from opx_learning.defs.location import Location
from opx_learning.defs.operations import Produced, run_operation
from opx_learning.defs.outcomes import scan_window_outcomes
from opx_learning.defs.partitions import custom_window, partition_window
from opx_learning.defs.shared import (
    FRESHNESS,
    SINGLE_RUN,
    asset_options,
    custom_parameters,
    range_parameters,
)


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

    parameters = range_parameters(context, cadence)
    yield from run_operation(context, r.safety, r.asset_storage, "PATTERN_EXTRACTION", parameters, work)


def _pattern_summaries_custom(context: dg.AssetExecutionContext, r: Any) -> Iterator[Any]:
    key = context.partition_key
    window = custom_window(key)

    def work() -> Produced:
        outcomes = scan_window_outcomes(r.asset_storage, r.outcome_store, baseline_reach(window))
        summary = extract_patterns_windows(outcomes, [window])
        metadata = summary_metadata(summary)
        results = {"summary_count": summary.height, "total_incidents": metadata["total_incidents"]}
        return Produced({key: summary}, {key: metadata}, results, checks={key: [window_check(metadata, key, "CUSTOM")]})

    yield from run_operation(context, r.safety, r.asset_storage, "PATTERN_EXTRACTION", custom_parameters(window), work)


def build_patterns(
    loc: Location, daily_outcomes: dg.AssetsDefinition
) -> tuple[dg.AssetsDefinition, dg.AssetsDefinition, dg.AssetsDefinition]:
    """The daily, weekly and custom pattern summaries of one location, reading `daily_outcomes`."""
    p, n = loc.partitions, loc.names
    io = asset_options(n)
    guarded = n.required("outcome_store", "asset_storage", "safety")

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

    return daily, weekly, pattern_summaries_custom
