"""Pattern extraction (SPEC §2): per-service summaries of a window of outcomes.

Choices where the spec is silent:

- `fp_rate` = false_positives / total_incidents (an outcome may be neither TP nor FP);
  an empty group has `fp_rate` 0.0, averages and percentiles null.
- Percentiles use linear interpolation between closest ranks (numpy's default,
  Hyndman-Fan type 7); null timings are ignored.
- Root causes are grouped by `" ".join(value.split()).casefold()` (trim, collapse
  inner whitespace, case-fold); a null root cause or resolution is not listed, but
  `share` is always count / total_incidents of the row's service.
- `emerging_root_causes` compares the count `c` of a root cause in the window with
  its count `p` in the previous window of the same length, both taken from the
  given frame. Under "same Poisson rate", `c` given `c + p` is Binomial(c + p, 1/2),
  so the exact one-sided p-value is `binom.sf(c - 1, c + p, 0.5)` (the conditional
  test for two Poisson rates with equal exposure). Causes with p < 0.01 are listed,
  by p-value then value, with no top-N cut. The list is empty for every row when the
  frame has no row recorded before the window's start (it does not reach back).
- `service=` restricts the input to that service: the result is the `ALL` row
  (computed over that service only) and, if it had outcomes, the service's row.
  `service=None` or `"ALL"` means every service.
"""

from __future__ import annotations

import hashlib

import numpy as np
import polars as pl
from scipy.stats import binom

from opx_learning.core.schema import (
    ALGORITHM_VERSION,
    ALL_SERVICES,
    EMERGING_P_VALUE,
    FP_RATE_WARNING,
    UTC_DATETIME,
    outcome_frame,
)
from opx_learning.core.windows import Instant, Window

TOP_N = 10
PERCENTILES = (0.5, 0.9)

TOP_ITEM = pl.Struct({"value": pl.String(), "count": pl.Int64(), "share": pl.Float64()})
EMERGING_ITEM = pl.Struct(
    {"value": pl.String(), "count": pl.Int64(), "previous_count": pl.Int64(), "p_value": pl.Float64()}
)
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
_TIMINGS = (("ttd_ms", "ttd"), ("ttr_ms", "ttr"))


def summary_id(service: str, window: Window) -> str:
    """Deterministic id of one service's summary of a window (SPEC §2)."""
    text = f"{service}:{window.start_iso}:{window.end_iso}:{ALGORITHM_VERSION}"
    return hashlib.sha256(text.encode()).hexdigest()


def normalize_root_cause(value: str) -> str:
    """The grouping key of a root cause: trimmed, inner whitespace collapsed, case-folded."""
    return " ".join(value.split()).casefold()


def extract_patterns(
    outcomes: pl.DataFrame | pl.LazyFrame,
    start: Instant,
    end: Instant,
    service: str | None = None,
) -> pl.DataFrame:
    """Summarise the outcomes recorded in `[start, end)` per service plus an `ALL` row.

    Args:
        outcomes: canonical outcomes (OUTCOME_SCHEMA); may extend beyond the window,
            rows of the previous window of equal length feed `emerging_root_causes`.
        start: window start (date, datetime or ISO-8601; naive = UTC).
        end: window end, exclusive (`...T23:59:59.999Z` means the end of that day).
        service: restrict to one service (the `ALL` row then covers that service only).

    Returns:
        One row per service with outcomes, `ALL` first then services ascending,
        columns and dtypes of `SUMMARY_SCHEMA`.

    Raises:
        WindowError: start/end unreadable or end <= start.
        TypeError, ValueError: `outcomes` is not a frame of canonical outcomes.
    """
    window = Window.parse(start, end)
    previous = window.previous()
    frame = outcome_frame(outcomes, _INPUT_COLUMNS).select(
        pl.col("service").cast(pl.String),
        *(pl.col(name) for name in _INPUT_COLUMNS[1:]),
    )
    recorded = pl.col("recorded_at")
    reaches_back = frame.select((recorded < window.start).any().alias("reaches_back"))
    only = None if service is None or service.strip() == ALL_SERVICES else service.strip()
    if only is not None:
        frame = frame.filter(pl.col("service") == only)
    in_window = (recorded >= window.start) & (recorded < window.end)
    current = frame.filter(in_window)

    per_service = current.group_by("service").agg(*_stat_exprs(grouped=True))
    overall = current.select(*_stat_exprs(grouped=False))
    causes = (
        frame.filter((recorded >= previous.start) & (recorded < window.end) & pl.col("root_cause").is_not_null())
        .group_by("service", "root_cause")
        .agg(
            current=in_window.sum().cast(pl.Int64),
            previous=(~in_window).sum().cast(pl.Int64),
        )
    )
    resolutions = (
        current.filter(pl.col("resolution_type").is_not_null())
        .group_by("service", "resolution_type")
        .agg(count=pl.len().cast(pl.Int64))
    )
    reach, per_service_df, overall_df, causes_df, resolutions_df = pl.collect_all(
        [reaches_back, per_service, overall, causes, resolutions]
    )

    stats = _stats_table(per_service_df, overall_df)
    causes_df = _with_all(causes_df, "root_cause", ("current", "previous"))
    causes_df = _with_root_cause_keys(causes_df)
    totals = stats.select("service", "total_incidents")
    top_causes = _top_lists(
        causes_df.filter(pl.col("current") > 0).select(
            "service", pl.col("display").alias("value"), pl.col("current").alias("count")
        ),
        totals,
        "top_root_causes",
    )
    resolutions_df = _with_all(
        resolutions_df.with_columns(pl.col("resolution_type").cast(pl.String)), "resolution_type", ("count",)
    )
    top_resolutions = _top_lists(
        resolutions_df.select("service", pl.col("resolution_type").alias("value"), "count"),
        totals,
        "top_resolutions",
    )
    emerging = _emerging(causes_df) if reach.item() else _empty_lists("emerging_root_causes", EMERGING_ITEM)

    result = (
        stats.join(top_causes, on="service", how="left")
        .join(top_resolutions, on="service", how="left")
        .join(emerging, on="service", how="left")
        .with_columns(
            pl.col("top_root_causes").fill_null(pl.lit([], dtype=pl.List(TOP_ITEM))),
            pl.col("top_resolutions").fill_null(pl.lit([], dtype=pl.List(TOP_ITEM))),
            pl.col("emerging_root_causes").fill_null(pl.lit([], dtype=pl.List(EMERGING_ITEM))),
            pl.lit(window.start, dtype=UTC_DATETIME).alias("window_start"),
            pl.lit(window.end, dtype=UTC_DATETIME).alias("window_end"),
            pl.lit(ALGORITHM_VERSION, dtype=pl.String).alias("version"),
            (pl.col("fp_rate") > FP_RATE_WARNING).alias("detection_warning"),
        )
        .sort(pl.col("service") != ALL_SERVICES, "service")
    )
    ids = [summary_id(name, window) for name in result["service"].to_list()]
    result = result.with_columns(pl.Series("summary_id", ids, dtype=pl.String))
    return result.select(list(SUMMARY_SCHEMA)).cast(SUMMARY_SCHEMA)


def _stat_exprs(*, grouped: bool) -> list[pl.Expr]:
    exprs = [
        pl.len().cast(pl.Int64).alias("total_incidents"),
        pl.col("true_positive").sum().cast(pl.Int64).alias("true_positives"),
        pl.col("false_positive").sum().cast(pl.Int64).alias("false_positives"),
        pl.col("human_confidence_rating").mean().cast(pl.Float64).alias("avg_confidence"),
    ]
    for column, short in _TIMINGS:
        exprs.append(pl.col(column).mean().alias(f"avg_{short}_ms"))
        if grouped:
            exprs.extend(
                pl.col(column).quantile(q, interpolation="linear").alias(f"p{round(q * 100)}_{short}_ms")
                for q in PERCENTILES
            )
        else:
            # One selection pass for both percentiles of the whole window.
            exprs.append(pl.col(column).quantile(list(PERCENTILES), interpolation="linear").alias(f"q_{short}"))
    return exprs


def _stats_table(per_service: pl.DataFrame, overall: pl.DataFrame) -> pl.DataFrame:
    overall = overall.with_columns(
        *(
            pl.col(f"q_{short}").list.get(i).alias(f"p{round(q * 100)}_{short}_ms")
            for _, short in _TIMINGS
            for i, q in enumerate(PERCENTILES)
        ),
        service=pl.lit(ALL_SERVICES),
    ).select(per_service.columns)
    stats = pl.concat([overall, per_service.cast(dict(overall.schema))], how="vertical")
    total = pl.col("total_incidents")
    return stats.with_columns(
        fp_rate=pl.when(total > 0).then(pl.col("false_positives") / total).otherwise(0.0),
    )


def _with_all(frame: pl.DataFrame, key: str, counts: tuple[str, ...]) -> pl.DataFrame:
    """Append the `ALL` rows: the per-service counts summed over services."""
    overall = frame.group_by(key).agg(pl.col(c).sum() for c in counts).with_columns(service=pl.lit(ALL_SERVICES))
    return pl.concat([frame, overall.select(frame.columns)], how="vertical")


def _with_root_cause_keys(causes: pl.DataFrame) -> pl.DataFrame:
    """Group spellings by normalised key per service; `display` = most frequent spelling (ties: smallest)."""
    spellings = causes["root_cause"].unique()
    keys = pl.DataFrame(
        {"root_cause": spellings, "key": [normalize_root_cause(s) for s in spellings.to_list()]},
        schema={"root_cause": pl.String, "key": pl.String},
    )
    causes = causes.join(keys, on="root_cause", how="left")
    return causes.group_by("service", "key").agg(
        pl.col("root_cause").sort_by("current", "root_cause", descending=[True, False]).first().alias("display"),
        pl.col("current").sum(),
        pl.col("previous").sum(),
    )


def _top_lists(counts: pl.DataFrame, totals: pl.DataFrame, name: str) -> pl.DataFrame:
    """Top `TOP_N` `{value, count, share}` per service, count desc then value asc."""
    top = (
        counts.sort("service", "count", "value", descending=[False, True, False])
        .group_by("service", maintain_order=True)
        .head(TOP_N)
        .join(totals, on="service", how="left")
        .with_columns(share=pl.col("count") / pl.col("total_incidents"))
    )
    return top.group_by("service").agg(pl.struct("value", "count", "share").alias(name))


def _emerging(causes: pl.DataFrame) -> pl.DataFrame:
    """Root causes whose window count exceeds the previous window's (exact conditional Poisson test)."""
    seen = causes.filter(pl.col("current") > 0)
    current = seen["current"].to_numpy()
    previous = seen["previous"].to_numpy()
    p_values = binom.sf(current - 1, current + previous, 0.5).astype(np.float64)
    return (
        seen.with_columns(pl.Series("p_value", p_values, dtype=pl.Float64))
        .filter(pl.col("p_value") < EMERGING_P_VALUE)
        .sort("service", "p_value", "display")
        .group_by("service", maintain_order=True)
        .agg(
            pl.struct(
                pl.col("display").alias("value"),
                pl.col("current").alias("count"),
                pl.col("previous").alias("previous_count"),
                "p_value",
            ).alias("emerging_root_causes")
        )
    )


def _empty_lists(name: str, item: pl.Struct) -> pl.DataFrame:
    return pl.DataFrame(schema={"service": pl.String, name: pl.List(item)})
