"""Emerging root causes (docs/emerging-root-causes.md): causes whose share of a window rose against a baseline of earlier windows.

For a window of length L:

- **Baseline**: of the `BASELINE_REACH` (8) windows of length L before it (`start - k·L`,
  k = 1..8), the nearest `BASELINE_WINDOWS` (4) that hold at least one outcome of the
  frame (after any service filter). Windows without outcomes — a quiet day, an
  ingestion gap — are skipped, so they neither empty the list nor count as zeros.
  Fewer than 4 such windows: the baseline is what there is (`baseline_windows` says how
  many); none: nothing is tested.
- **Test**, per (service, normalised cause) and per cause over all services (`ALL`),
  with `c` occurrences of the window's `n` outcomes and `b` of the baseline's `m`: the
  one-sided Fisher exact test that the cause's share rose, i.e. the probability of at
  least `c` occurrences in the window given the window's total and the cause's pooled
  share, `p = hypergeom.sf(c - 1, n + m, c + b, n)`. Shares, not counts, are compared,
  so a busier Monday after a quiet weekend is not "new"; the test needs no pseudo-count
  for a cause absent from the baseline (its p-value is `C(n, c) / C(n + m, c)`), and it
  carries the baseline's own sampling error, so a thin baseline (a handful of rows)
  cannot manufacture a flag.
- **Candidates**: `c >= MIN_COUNT` (5). Benjamini–Hochberg over all candidates of the
  window (every service and `ALL` together); causes with adjusted p <= `FDR_Q` (0.01) are
  listed, by adjusted p-value then value.

Entries are `{value, count, baseline_count, p_value}`: the normalised cause (one label
everywhere), `c`, `b` and the BH-adjusted p-value.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
from scipy.stats import hypergeom

from opx_learning.core.schema import ALL_SERVICES
from opx_learning.core.windows import Window

BASELINE_WINDOWS = 4
BASELINE_REACH = 8
MIN_COUNT = 5
FDR_Q = 0.01

EMERGING_ITEM = pl.Struct(
    {"value": pl.String(), "count": pl.Int64(), "baseline_count": pl.Int64(), "p_value": pl.Float64()}
)
_LISTS_SCHEMA = {"window": pl.UInt32(), "service": pl.String(), "emerging_root_causes": pl.List(EMERGING_ITEM)}


class BaselineNotCovered(UserWarning):
    """The outcomes given do not reach back over a window's full emerging-root-cause baseline."""


@dataclass(frozen=True)
class Emerging:
    """Emerging root causes of several windows.

    Attributes:
        lists: columns `window` (index into the windows), `service` and
            `emerging_root_causes`; only (window, service) pairs with at least one entry.
        baseline_windows: per window, how many earlier windows with outcomes formed its
            baseline (0..`BASELINE_WINDOWS`).
    """

    lists: pl.DataFrame
    baseline_windows: list[int]


def baseline_reach(window: Window) -> Window:
    """The span an extraction of `window` reads: its `BASELINE_REACH` previous windows and itself."""
    return Window(window.start - BASELINE_REACH * window.length, window.end)


def emerging_root_causes(outcomes: pl.LazyFrame | pl.DataFrame, windows: Sequence[Window]) -> Emerging:
    """Test every (service, cause) of each window against its baseline (module docstring).

    Args:
        outcomes: columns `service` (str), `recorded_at` (UTC datetime) and `root_cause`
            (str or null), already restricted to the services of interest; rows before a
            window are its baseline.
        windows: windows of equal length (any order; a window may lie in another's baseline).

    Returns:
        The lists per (window, service) and the baseline size of every window.
    """
    if not windows:
        return Emerging(pl.DataFrame(schema=_LISTS_SCHEMA), [])
    frame = outcomes.lazy() if isinstance(outcomes, pl.DataFrame) else outcomes
    frame = frame.select("service", "recorded_at", "root_cause")
    length_us = windows[0].length // timedelta(microseconds=1)
    starts = np.array([_epoch_us(w.start) for w in windows], dtype=np.int64)
    phases = starts % length_us
    # Windows whose starts lie on one grid of step L share one pass over the frame.
    grids = [(int(phase), np.flatnonzero(phases == phase)) for phase in np.unique(phases)]
    offsets = np.arange(BASELINE_REACH + 1, dtype=np.int64)
    queries = []
    for phase, members in grids:
        slots = (starts[members] - phase) // length_us
        needed = np.unique((slots[:, None] - offsets[None, :]).ravel())
        slot = (pl.col("recorded_at").dt.epoch("us") - phase) // length_us
        queries.append(
            frame.with_columns(slot=slot)
            .filter(pl.col("slot").is_in(needed.tolist()))
            .group_by("slot", "service", "root_cause")
            .agg(n=pl.len().cast(pl.Int64))
        )
    counted = pl.collect_all(queries)

    roles, baseline_windows = [], np.zeros(len(windows), dtype=np.int64)
    for (phase, members), counts in zip(grids, counted, strict=True):
        slots = (starts[members] - phase) // length_us
        with_data = counts.group_by("slot").agg(pl.col("n").sum()).filter(pl.col("n") > 0)["slot"].to_numpy()
        before = slots[:, None] - offsets[None, 1:]
        has = np.isin(before, with_data)
        chosen = has & (np.cumsum(has, axis=1) <= BASELINE_WINDOWS)
        baseline_windows[members] = chosen.sum(axis=1)
        rows, cols = np.nonzero(chosen)
        roles.append(
            pl.DataFrame(
                {
                    "window": np.concatenate([members, members[rows]]).astype(np.uint32),
                    "slot": np.concatenate([slots, before[rows, cols]]),
                    "current": np.concatenate([np.ones(len(members), bool), np.zeros(len(rows), bool)]),
                }
            ).join(counts, on="slot", how="inner")
        )
    by_spelling = (
        pl.concat(roles)
        .group_by("window", "service", "root_cause")
        .agg(
            current=pl.col("n").filter("current").sum(),
            baseline=pl.col("n").filter(~pl.col("current")).sum(),
        )
    )
    by_spelling = pl.concat(
        [
            by_spelling,
            by_spelling.group_by("window", "root_cause")
            .agg(pl.col("current", "baseline").sum())
            .select("window", pl.lit(ALL_SERVICES).alias("service"), "root_cause", "current", "baseline"),
        ]
    )
    totals = by_spelling.group_by("window", "service").agg(
        window_total=pl.col("current").sum(), baseline_total=pl.col("baseline").sum()
    )
    candidates = (
        _by_cause(by_spelling.filter(pl.col("root_cause").is_not_null()))
        .filter(pl.col("current") > 0)
        .join(totals, on=["window", "service"], how="left")
        .filter(pl.col("baseline_total") > 0)
    )
    lists = _listed(_with_p_values(candidates))
    return Emerging(lists, baseline_windows.tolist())


def warn_uncovered(windows: Sequence[Window], baseline_windows: Sequence[int]) -> None:
    """Warn (`BaselineNotCovered`) for each window whose baseline has fewer than `BASELINE_WINDOWS` windows."""
    for window, found in zip(windows, baseline_windows, strict=True):
        if found < BASELINE_WINDOWS:
            reach = baseline_reach(window)
            warnings.warn(
                BaselineNotCovered(
                    f"emerging_root_causes of {window.start_iso}..{window.end_iso}: the outcomes hold data in "
                    f"{found} of the {BASELINE_WINDOWS} baseline windows (searched {reach.start_iso}.."
                    f"{window.start_iso}); pass outcomes from {reach.start_iso} on for a full baseline"
                    + ("; nothing was tested" if found == 0 else "")
                ),
                stacklevel=3,
            )


def _by_cause(by_spelling: pl.DataFrame) -> pl.DataFrame:
    """Group spellings by normalised cause; `display` is the normalised cause itself (one label per cause)."""
    # Imported here: patterns imports this module.
    from opx_learning.core.patterns import root_cause_keys

    return (
        by_spelling.join(root_cause_keys(by_spelling["root_cause"]), on="root_cause", how="left")
        .group_by("window", "service", "key")
        .agg(pl.col("current").sum(), pl.col("baseline").sum())
        .with_columns(display=pl.col("key"))
    )


def _with_p_values(candidates: pl.DataFrame) -> pl.DataFrame:
    """Fisher's one-sided p-value per candidate and its Benjamini–Hochberg adjustment within the window."""
    c = candidates["current"].to_numpy()
    b = candidates["baseline"].to_numpy()
    n = candidates["window_total"].to_numpy()
    m = candidates["baseline_total"].to_numpy()
    p = hypergeom.sf(c - 1, n + m, c + b, n).astype(np.float64)
    ranked = (
        candidates.with_columns(pl.Series("p", np.clip(p, 0.0, 1.0), dtype=pl.Float64))
        .sort("window", "p")
        .with_columns(
            rank=pl.int_range(1, pl.len() + 1).over("window"),
            family=pl.len().over("window"),
        )
    )
    scaled = pl.col("p") * pl.col("family") / pl.col("rank")
    # BH: adjusted p_(i) = min over j >= i of p_(j) * m / j (rows are sorted by p within the window).
    return ranked.with_columns(
        p_value=scaled.reverse().cum_min().reverse().over("window").clip(upper_bound=1.0)
    )


def _listed(tested: pl.DataFrame) -> pl.DataFrame:
    flagged = tested.filter((pl.col("p_value") <= FDR_Q) & (pl.col("current") >= MIN_COUNT)).sort("window", "service", "p_value", "display")
    lists = flagged.group_by("window", "service", maintain_order=True).agg(
        pl.struct(
            pl.col("display").alias("value"),
            pl.col("current").cast(pl.Int64).alias("count"),
            pl.col("baseline").cast(pl.Int64).alias("baseline_count"),
            pl.col("p_value"),
        ).alias("emerging_root_causes")
    )
    return lists.cast(_LISTS_SCHEMA)  # type: ignore[arg-type]


def _epoch_us(instant: datetime) -> int:
    return (instant - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)

