"""Pattern extraction (docs/design.md#patterns): per-service summaries of a window of outcomes.

Choices beyond docs/design.md:

- `fp_rate` = false_positives / total_incidents (an outcome may be neither TP nor FP);
  an empty group has `fp_rate` 0.0, averages and percentiles null.
- Percentiles use linear interpolation between closest ranks (Hyndman-Fan type 7, in
  polars' arithmetic, so they equal `pl.col(...).quantile(q, "linear")` bit for bit);
  null timings are ignored.
- Out of core: a lazy source is read with polars' streaming engine, only the columns
  used. Counts stream through group-bys; means and percentiles are computed from the
  only per-row state kept, the durations and rating per (window, service) (28 bytes a
  row), grouped by a stable radix sort, so the cost is linear in the rows. Means add
  each group's values in row order, so eager and lazy sources, however chunked, give
  the same floats.
- Root causes are grouped by `" ".join(value.split()).casefold()` (trim, collapse
  inner whitespace, case-fold); a null root cause or resolution is not listed, but
  `share` is always count / total_incidents of the row's service.
- `emerging_root_causes` (`core/emerging.py`): causes whose share of the window rose
  against a baseline of the 4 nearest earlier windows with outcomes (within 8), taken
  from the given frame; `emerging_baseline_windows` says how many formed the baseline,
  and `extract_patterns` warns (`BaselineNotCovered`) when the frame held fewer than 4.
- `extract_patterns_windows` summarises several windows of equal length, sorted and
  non-overlapping (the days or weeks of a backfill), in one vectorised pass: every
  group-by carries the window index, so the result is exactly the concatenation of
  `extract_patterns` of each window; `extract_patterns` is the one-window case (every
  float of a window is computed from the same values in the same order either way).
- `service=` restricts the input to that service: the result is the `ALL` row
  (computed over that service only) and, if it had outcomes, the service's row.
  `service=None` or `"ALL"` means every service.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from opx_learning.core.emerging import (
    EMERGING_ITEM,
    emerging_root_causes,
    warn_uncovered,
)
from opx_learning.core.schema import (
    ALGORITHM_VERSION,
    ALL_SERVICES,
    FP_RATE_WARNING,
    UTC_DATETIME,
    outcome_frame,
)
from opx_learning.core.validation import check_numeric_input
from opx_learning.core.windows import Instant, Window

TOP_N = 10
PERCENTILES = (0.5, 0.9)

TOP_ITEM = pl.Struct({"value": pl.String(), "count": pl.Int64(), "share": pl.Float64()})
SUMMARY_SCHEMA: dict[str, pl.DataType] = {
    "summary_id": pl.String(),
    "service": pl.String(),
    "window_start": UTC_DATETIME,
    "window_end": UTC_DATETIME,
    "version": pl.String(),
    "total_incidents": pl.Int64(),
    "true_positives": pl.Int64(),
    "false_positives": pl.Int64(),
    "fp_rate": pl.Float64(),
    "avg_confidence": pl.Float64(),
    "avg_ttd_ms": pl.Float64(),
    "p50_ttd_ms": pl.Float64(),
    "p90_ttd_ms": pl.Float64(),
    "avg_ttr_ms": pl.Float64(),
    "p50_ttr_ms": pl.Float64(),
    "p90_ttr_ms": pl.Float64(),
    "top_root_causes": pl.List(TOP_ITEM),
    "top_resolutions": pl.List(TOP_ITEM),
    "detection_warning": pl.Boolean(),
    "emerging_root_causes": pl.List(EMERGING_ITEM),
    "emerging_baseline_windows": pl.Int64(),
}

_INPUT_COLUMNS = (
    "service",
    "recorded_at",
    "true_positive",
    "false_positive",
    "root_cause",
    "resolution_type",
    "ttd_ms",
    "ttr_ms",
    "human_confidence_rating",
)
_TIMINGS = {"ttd_ms": "ttd", "ttr_ms": "ttr"}
_MEANS = {"human_confidence_rating": "avg_confidence", "ttd_ms": "avg_ttd_ms", "ttr_ms": "avg_ttr_ms"}


def summary_id(service: str, window: Window) -> str:
    """Deterministic id of one service's summary of a window: SHA-256 of `"{service}:{start}:{end}:{version}"`."""
    text = f"{service}:{window.start_iso}:{window.end_iso}:{ALGORITHM_VERSION}"
    return hashlib.sha256(text.encode()).hexdigest()


def normalize_root_cause(value: str) -> str:
    """The grouping key of a root cause, which is also its label everywhere: trimmed, inner whitespace collapsed, case-folded."""
    return " ".join(value.split()).casefold()


def root_cause_keys(spellings: pl.Series) -> pl.DataFrame:
    """`root_cause` (each distinct spelling) -> `key` (its normalised form), for a join."""
    distinct = spellings.unique()
    return pl.DataFrame(
        {"root_cause": distinct, "key": [normalize_root_cause(s) for s in distinct.to_list()]},
        schema={"root_cause": pl.String, "key": pl.String},
    )


def extract_patterns(
    outcomes: pl.DataFrame | pl.LazyFrame,
    start: Instant,
    end: Instant,
    service: str | None = None,
) -> pl.DataFrame:
    """Summarise the outcomes recorded in `[start, end)` per service plus an `ALL` row.

    Args:
        outcomes: canonical outcomes (OUTCOME_SCHEMA); may extend beyond the window,
            rows of the 8 windows of equal length before it feed `emerging_root_causes`
            (a `BaselineNotCovered` warning says when fewer than 4 of them hold outcomes).
        start: window start (date, datetime or ISO-8601; naive = UTC).
        end: window end, exclusive (`...T23:59:59.999Z` means the end of that day).
        service: restrict to one service (the `ALL` row then covers that service only).

    Returns:
        One row per service with outcomes, `ALL` first then services ascending,
        columns and dtypes of `SUMMARY_SCHEMA`.

    Raises:
        WindowError: start/end unreadable, outside 1970-01-01..2200-01-01 UTC, or end <= start.
        TypeError, ValueError: `outcomes` is not a frame of canonical outcomes.
        ValueError: rows in the window hold NaN, infinite or out-of-range `ttd_ms`, `ttr_ms` or
            `human_confidence_rating` (unvalidated input is refused, not summarised; the message
            names each column and count).
    """
    window = Window.parse(start, end)
    check_numeric_input(outcomes, window, ("ttd_ms", "ttr_ms", "human_confidence_rating"))
    result = extract_patterns_windows(outcomes, [window], service)
    warn_uncovered([window], result["emerging_baseline_windows"][:1].to_list())
    return result


def extract_patterns_windows(
    outcomes: pl.DataFrame | pl.LazyFrame,
    windows: Sequence[Window],
    service: str | None = None,
) -> pl.DataFrame:
    """Summarise several equal-length windows in one pass: `extract_patterns` of each, concatenated.

    Args:
        outcomes: canonical outcomes (OUTCOME_SCHEMA); rows of the 8 windows of equal
            length before each window feed its `emerging_root_causes` (core/emerging.py).
        windows: windows of equal length, sorted and non-overlapping (e.g. the days or
            weeks of a backfill).
        service: restrict to one service (each `ALL` row then covers that service only).

    Returns:
        The windows in order; within each, `ALL` first then services ascending; columns
        and dtypes of `SUMMARY_SCHEMA` (no rows for no windows).

    Raises:
        TypeError: an item of `windows` is not a `Window`, or `outcomes` is not a frame.
        ValueError: windows of unequal length, unsorted or overlapping; `outcomes` is
            not a frame of canonical outcomes.
    """
    windows = _checked(windows)
    frame = outcome_frame(outcomes, _INPUT_COLUMNS).select(
        pl.col("service").cast(pl.String),
        pl.col("recorded_at").dt.convert_time_zone("UTC").dt.cast_time_unit("us"),
        *(pl.col(name) for name in _INPUT_COLUMNS[2:]),
    )
    if not windows:
        return pl.DataFrame(schema=SUMMARY_SCHEMA)
    length = windows[0].length
    starts = pl.Series("window_start", [w.start for w in windows], dtype=UTC_DATETIME)
    recorded = pl.col("recorded_at")
    only = None if service is None or service.strip() == ALL_SERVICES else service.strip()
    if only is not None:
        frame = frame.filter(pl.col("service") == only)
    emerging = emerging_root_causes(frame, windows)
    frame = frame.filter((recorded >= windows[0].start) & (recorded < windows[-1].end))
    # Each row lies in at most one window.
    current = frame.with_columns(window=_window_index(windows, 0)).drop_nulls("window")

    # One group-by gives every count: per service, per root-cause spelling and per resolution.
    counts = current.group_by("window", "service", "root_cause", "resolution_type").agg(*_count_exprs())
    # Means and percentiles need every duration: only these compact columns are kept, in row order.
    durations = current.select(
        *(["window"] if len(windows) > 1 else []),
        _service_code(pl.col("service")).alias("code"),
        *(pl.col(column).cast(pl.Float64) for column in _MEANS),
    )
    # The counts first, then the compact columns alone: their buffers are never held at the same time.
    counts_df = counts.collect(engine="streaming")
    per_service_df = counts_df.group_by("window", "service").agg(
        pl.col("total_incidents", "true_positives", "false_positives").sum()
    )
    current_df = (
        counts_df.filter(pl.col("root_cause").is_not_null())
        .group_by("window", "service", "root_cause")
        .agg(current=pl.col("total_incidents").sum())
    )
    resolutions_df = (
        counts_df.filter(pl.col("resolution_type").is_not_null())
        .group_by("window", "service", "resolution_type")
        .agg(count=pl.col("total_incidents").sum())
    )
    del counts_df
    durations_df = durations.collect(engine="streaming")

    spans = pl.DataFrame(
        {
            "window": pl.Series(range(len(windows)), dtype=pl.UInt32),
            "window_start": starts,
            "window_end": starts + length,
            "emerging_baseline_windows": pl.Series(emerging.baseline_windows, dtype=pl.Int64),
        }
    )
    service_stats, overall_stats = _duration_stats(durations_df, per_service_df["service"], len(windows))
    del durations_df
    stats = _stats_table(
        per_service_df.join(service_stats, on=["window", "service"], how="left", nulls_equal=True),
        per_service_df.group_by("window").agg(pl.col("total_incidents", "true_positives", "false_positives").sum()),
        overall_stats,
        spans,
    )
    keys = ["window", "service"]
    causes_df = _with_root_cause_keys(_with_all(current_df, "root_cause", ("current",)))
    totals = stats.select(*keys, "total_incidents")
    top_causes = _top_lists(
        causes_df.filter(pl.col("current") > 0).select(
            *keys, pl.col("display").alias("value"), pl.col("current").alias("count")
        ),
        totals,
        "top_root_causes",
    )
    resolutions_df = _with_all(
        resolutions_df.with_columns(pl.col("resolution_type").cast(pl.String)), "resolution_type", ("count",)
    )
    top_resolutions = _top_lists(
        resolutions_df.select(*keys, pl.col("resolution_type").alias("value"), "count"),
        totals,
        "top_resolutions",
    )
    result = (
        stats.join(top_causes, on=keys, how="left")
        .join(top_resolutions, on=keys, how="left")
        .join(emerging.lists, on=keys, how="left")
        .join(spans, on="window", how="left")
        .with_columns(
            pl.col("top_root_causes").fill_null(pl.lit([], dtype=pl.List(TOP_ITEM))),
            pl.col("top_resolutions").fill_null(pl.lit([], dtype=pl.List(TOP_ITEM))),
            pl.col("emerging_root_causes").fill_null(pl.lit([], dtype=pl.List(EMERGING_ITEM))),
            pl.lit(ALGORITHM_VERSION, dtype=pl.String).alias("version"),
            (pl.col("fp_rate") > FP_RATE_WARNING).alias("detection_warning"),
        )
        .sort("window", pl.col("service") != ALL_SERVICES, "service")
    )
    ids = [
        summary_id(name, windows[index])
        for name, index in zip(result["service"].to_list(), result["window"].to_list(), strict=True)
    ]
    result = result.with_columns(pl.Series("summary_id", ids, dtype=pl.String))
    return result.select(list(SUMMARY_SCHEMA)).cast(SUMMARY_SCHEMA)


def _checked(windows: Sequence[Window]) -> list[Window]:
    """The windows as a list, or a ValueError naming the first of unequal length, unsorted or overlapping."""
    checked = list(windows)
    for index, window in enumerate(checked):
        if not isinstance(window, Window):
            raise TypeError(f"windows[{index}]: expected a Window, got {type(window).__name__}")
        if index == 0:
            continue
        before = checked[index - 1]
        if window.length != checked[0].length:
            raise ValueError(
                f"windows[{index}]: {window.start_iso}..{window.end_iso} lasts {window.length}, "
                f"windows[0] lasts {checked[0].length}; windows must have equal length"
            )
        if window.start < before.end:
            raise ValueError(
                f"windows[{index}]: {window.start_iso}..{window.end_iso} starts before windows[{index - 1}] "
                f"ends ({before.end_iso}); windows must be sorted and non-overlapping"
            )
    return checked


def _window_index(windows: list[Window], shift: int) -> pl.Expr:
    """Index i of the window `windows[i]` moved back `shift` lengths that holds `recorded_at`, else null."""
    recorded = pl.col("recorded_at")
    length = windows[0].length
    first = windows[0].start - shift * length
    if all(w.start == windows[0].start + i * length for i, w in enumerate(windows)):
        # Contiguous windows (every partition range): the index is arithmetic, no search.
        micros = length // timedelta(microseconds=1)
        slot = (recorded.dt.epoch("us") - _epoch_us(first)) // micros
        return pl.when((slot >= 0) & (slot < len(windows))).then(slot.cast(pl.UInt32))
    starts = pl.Series([w.start - shift * length for w in windows], dtype=UTC_DATETIME)
    started = pl.lit(starts).search_sorted(recorded, side="right")
    ended = pl.lit(starts + length).search_sorted(recorded, side="right")
    # Sorted, non-overlapping windows: inside one iff one more has started than has ended.
    return pl.when(started > ended).then(ended)


def _epoch_us(instant: datetime) -> int:
    return (instant - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def _count_exprs() -> list[pl.Expr]:
    return [
        pl.len().cast(pl.Int64).alias("total_incidents"),
        pl.col("true_positive").sum().cast(pl.Int64).alias("true_positives"),
        pl.col("false_positive").sum().cast(pl.Int64).alias("false_positives"),
    ]


def _service_code(service: pl.Expr) -> pl.Expr:
    """A small integer per service name (null for null), the same for the same name within a process."""
    return service.cast(pl.Categorical).to_physical()


def _duration_stats(durations: pl.DataFrame, services: pl.Series, windows: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The means and percentiles per (window, service) and per window (`ALL`), consuming the compact columns.

    `durations` holds `code` (`_service_code`), `window` (absent for a single window) and the
    `_MEANS` columns; each is removed from it once read, so a column is held twice at most.

    Rows are grouped by (window, service name) keeping their order within a group, so every
    sum adds the same values in the same order whatever the source and its chunking.
    """
    names = (
        pl.DataFrame({"service": services})
        .unique()
        .sort("service", nulls_last=False)
        .with_columns(code=_service_code(pl.col("service")))
    )
    span = names.height
    groups = windows * span
    key_type = np.uint16 if groups <= 2**16 else np.uint32
    # Each row's key is its window * span + the rank of its service name, looked up by code.
    null_code = int(names["code"].max() or 0) + 1
    codes = names["code"].fill_null(null_code).to_numpy()
    rank = np.zeros(null_code + 1, dtype=key_type)
    rank[codes] = np.arange(span, dtype=key_type)
    key = rank[durations.drop_in_place("code").fill_null(null_code).to_numpy()]
    if "window" in durations.columns:
        key += durations.drop_in_place("window").to_numpy().astype(key_type) * key_type(span)
    # A stable sort of up to 2**16 distinct keys is a radix sort: linear in the rows.
    order = np.argsort(key, kind="stable")
    if order.size < 2**32:
        order = order.astype(np.uint32)
    bounds = np.concatenate(([0], np.cumsum(np.bincount(key, minlength=groups))))
    del key
    group_slices = [(bounds[g], bounds[g + 1]) for g in range(groups)]
    window_slices = [(bounds[w * span], bounds[(w + 1) * span]) for w in range(windows)]
    per_group: dict[str, list[float | None]] = {}
    per_window: dict[str, list[float | None]] = {}
    grouped = np.empty(order.size)
    for column, name in _MEANS.items():
        series = durations.drop_in_place(column)
        present = series.is_not_null().to_numpy()[order] if series.null_count() else None
        values = series.to_numpy()
        del series
        # One buffer serves every column: fresh allocations of this size cost page faults.
        np.take(values, order, out=grouped, mode="clip")  # indices are valid; "raise" would buffer
        del values
        column_values, column_groups, column_windows = grouped, group_slices, window_slices
        if present is not None:
            # The present values once, compacted in the same order; the slices move with them.
            column_values = grouped[present]
            edges = np.concatenate(([0], np.cumsum(present, dtype=np.int64)))[bounds]
            column_groups = [(edges[g], edges[g + 1]) for g in range(groups)]
            column_windows = [(edges[w * span], edges[(w + 1) * span]) for w in range(windows)]
            del present
        per_group[name] = [_mean(column_values, None, *bounds) for bounds in column_groups]
        per_window[name] = [_mean(column_values, None, *bounds) for bounds in column_windows]
        short = _TIMINGS.get(column)
        if short is None:
            continue
        # Each service's slice is reordered in place first, then its window's whole slice.
        found = [_percentiles(column_values, None, *bounds) for bounds in column_groups]
        whole = [_percentiles(column_values, None, *bounds) for bounds in column_windows]
        for index, q in enumerate(PERCENTILES):
            per_group[f"p{round(q * 100)}_{short}_ms"] = [f[index] for f in found]
            per_window[f"p{round(q * 100)}_{short}_ms"] = [f[index] for f in whole]
    schema = {"window": pl.UInt32(), **{name: pl.Float64() for name in per_group}}
    service_stats = (
        pl.DataFrame(
            {"window": np.repeat(np.arange(windows), span), "rank": np.tile(np.arange(span), windows), **per_group},
            schema={**schema, "rank": pl.Int64()},
        )
        .filter(pl.Series(np.diff(bounds) > 0))
        .join(names.with_row_index("rank").select(pl.col("rank").cast(pl.Int64), "service"), on="rank")
        .drop("rank")
    )
    overall_stats = pl.DataFrame({"window": np.arange(windows), **per_window}, schema=schema)
    return service_stats, overall_stats


def _mean(values: np.ndarray, present: np.ndarray | None, begin: int, end: int) -> float | None:
    """The mean of `values[begin:end]`, nulls excluded (None when nothing is left)."""
    part = values[begin:end] if present is None else values[begin:end][present[begin:end]]
    return float(np.sum(part) / part.size) if part.size else None


def _percentiles(values: np.ndarray, present: np.ndarray | None, begin: int, end: int) -> list[float | None]:
    """The PERCENTILES of `values[begin:end]` (nulls excluded), reordering that slice in place.

    Linear interpolation between closest ranks, in exactly polars' arithmetic: position
    f = (n - 1) * q, lower = x[floor f], upper = x[ceil f], result lower when both are
    equal, else (f - floor f) * (upper - lower) + lower.
    """
    part = values[begin:end] if present is None else values[begin:end][present[begin:end]]
    n = part.size
    if n == 0:
        return [None] * len(PERCENTILES)
    positions = [(n - 1.0) * q for q in PERCENTILES]
    lowers = sorted({int(f) for f in positions})
    # One single-position partition per lower rank, each over what lies above the previous one:
    # numpy selects one position much faster (vectorised) than several at once.
    begin_at = 0
    for rank in lowers:
        part[begin_at:].partition(rank - begin_at)
        begin_at = rank + 1
    # Everything above a lower rank is >= it, and part[next] is >= everything between them,
    # so the value at rank + 1 is the minimum up to and including the next lower rank.
    bounds = [*(rank + 1 for rank in lowers[1:]), n]
    result: list[float | None] = []
    for f in positions:
        index = lowers.index(int(f))
        lower = part[int(f)]
        upper = part[int(f) + 1 : bounds[index]].min() if math.ceil(f) > int(f) and int(f) + 1 < n else lower
        result.append(float(lower if lower == upper else (f - int(f)) * (upper - lower) + lower))
    return result


def _stats_table(
    per_service: pl.DataFrame, overall: pl.DataFrame, overall_stats: pl.DataFrame, spans: pl.DataFrame
) -> pl.DataFrame:
    """Per-service rows plus one `ALL` row per window (zero counts for a window without outcomes)."""
    overall = (
        spans.select("window")
        .join(overall_stats, on="window", how="left")
        .join(overall, on="window", how="left")
        .with_columns(pl.col("total_incidents", "true_positives", "false_positives").fill_null(0))
        .with_columns(service=pl.lit(ALL_SERVICES))
        .select(per_service.columns)
    )
    stats = pl.concat([overall, per_service.cast(dict(overall.schema))], how="vertical")
    total = pl.col("total_incidents")
    return stats.with_columns(
        fp_rate=pl.when(total > 0).then(pl.col("false_positives") / total).otherwise(0.0),
    )


def _with_all(frame: pl.DataFrame, key: str, counts: tuple[str, ...]) -> pl.DataFrame:
    """Append the `ALL` rows: the per-service counts summed over services, per window."""
    overall = (
        frame.group_by("window", key)
        .agg(pl.col(c).sum() for c in counts)
        .with_columns(service=pl.lit(ALL_SERVICES))
    )
    return pl.concat([frame, overall.select(frame.columns)], how="vertical")


def _with_root_cause_keys(causes: pl.DataFrame) -> pl.DataFrame:
    """Group spellings by normalised key per window and service; `display` is the key itself (one label per cause)."""
    causes = causes.join(root_cause_keys(causes["root_cause"]), on="root_cause", how="left")
    return causes.group_by("window", "service", "key").agg(pl.col("current").sum()).with_columns(
        display=pl.col("key")
    )


def _top_lists(counts: pl.DataFrame, totals: pl.DataFrame, name: str) -> pl.DataFrame:
    """Top `TOP_N` `{value, count, share}` per window and service, count desc then value asc."""
    keys = ["window", "service"]
    top = (
        counts.sort(*keys, "count", "value", descending=[False, False, True, False])
        .group_by(keys, maintain_order=True)
        .head(TOP_N)
        .join(totals, on=keys, how="left")
        .with_columns(share=pl.col("count") / pl.col("total_incidents"))
    )
    return top.group_by(keys).agg(pl.struct("value", "count", "share").alias(name))

