"""Emerging root causes on generated data: false flags when nothing changes, detection day of a planted cause.

    python benchmarks/bench_emerging.py
    python benchmarks/bench_emerging.py --seeds 10 --days 120 --per-day 400 --json

For each seed, two runs of `generate_outcomes` (12 services, weekday/weekend volumes):

- stationary: no planted cause; every flag over the daily windows after the first 8
  days (which only serve as baseline) is a false flag. Reported per 30 windows, with
  how many fell on Mondays (the busy day after a quiet weekend).
- planted: the same with a cause appearing on `--plant-day` at `--share` of the true
  positives; the detection day is 1 when the cause is listed (any row) on its first day,
  2 on the second, and so on ("-" if never within a week). Flags of other causes
  in these runs are counted as false flags too.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from opx_learning.core.emerging import BASELINE_REACH
from opx_learning.core.patterns import extract_patterns_windows, normalize_root_cause
from opx_learning.core.synthetic import EMERGING_ROOT_CAUSE, generate_outcomes
from opx_learning.core.windows import day_window

START = datetime(2026, 1, 1, tzinfo=UTC)  # a Thursday


def flags(frame: pl.DataFrame, days: int) -> pl.DataFrame:
    """One row per listed (day, service, cause) over the daily windows after the baseline warm-up."""
    windows = [day_window((START + timedelta(days=i)).date()) for i in range(BASELINE_REACH, days)]
    summaries = extract_patterns_windows(frame, windows)
    return (
        summaries.select("window_start", "service", "emerging_root_causes")
        .explode("emerging_root_causes")
        .drop_nulls("emerging_root_causes")
        .unnest("emerging_root_causes")
        .with_columns(cause=pl.col("value").map_elements(normalize_root_cause, return_dtype=pl.String))
    )


def run(seed: int, days: int, per_day: int, plant_day: int, share: float) -> dict[str, Any]:
    """The figures of one seed."""
    windows = days - BASELINE_REACH
    stationary = flags(generate_outcomes(START, days=days, per_day=per_day, seed=seed, emerging_root_cause=None), days)
    plant_from = START + timedelta(days=plant_day)
    planted_frame = generate_outcomes(
        START, days=days, per_day=per_day, seed=seed, emerging_from=plant_from, emerging_share=share
    )
    planted = flags(planted_frame, days)
    hits = planted.filter(pl.col("cause") == EMERGING_ROOT_CAUSE)
    first_hit = hits["window_start"].min()
    detection = (first_hit - plant_from).days + 1 if first_hit is not None else None
    other = planted.filter(pl.col("cause") != EMERGING_ROOT_CAUSE)
    mondays = stationary.filter(pl.col("window_start").dt.weekday() == 1).height
    return {
        "seed": seed,
        "windows": windows,
        "stationary_flags": stationary.height,
        "stationary_flags_per_30": round(30 * stationary.height / windows, 2),
        "stationary_monday_flags": mondays,
        "planted_other_flags_per_30": round(30 * other.height / windows, 2),
        "detection_day": detection if detection is not None and detection <= 7 else None,
        "first_day_rows": hits.filter(pl.col("window_start") == plant_from).height,
        "first_day_all_count": int(
            hits.filter((pl.col("window_start") == plant_from) & (pl.col("service") == "ALL"))["count"].sum()
        ),
    }


def main(argv: list[str] | None = None) -> int:
    """Print the table (Markdown, or JSON with --json)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=6, help="seeds 0..N-1 (default 6)")
    parser.add_argument("--days", type=int, default=98, help="days generated, the first 8 are baseline only")
    parser.add_argument("--per-day", type=int, default=400, help="mean outcomes per day (default 400)")
    parser.add_argument("--plant-day", type=int, default=60, help="day index the planted cause appears")
    parser.add_argument("--share", type=float, default=0.15, help="share of true positives with the planted cause")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    rows = [run(seed, args.days, args.per_day, args.plant_day, args.share) for seed in range(args.seeds)]
    elapsed = time.perf_counter() - started
    total_windows = sum(r["windows"] for r in rows)
    total_flags = sum(r["stationary_flags"] for r in rows)
    if args.json:
        print(json.dumps({"args": vars(args), "rows": rows, "seconds": round(elapsed, 1)}, indent=2))
        return 0
    print(
        f"{args.seeds} seeds, {args.days - BASELINE_REACH} daily windows each, {args.per_day} outcomes/day, "
        f"planted cause on day {args.plant_day} at {args.share:.0%} of true positives\n"
    )
    print("| seed | stationary flags | per 30 windows | on Mondays | planted run: other flags per 30 "
          "| detection day | rows listing it on day 1 | ALL count day 1 |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['seed']} | {r['stationary_flags']} | {r['stationary_flags_per_30']:.2f} "
            f"| {r['stationary_monday_flags']} | {r['planted_other_flags_per_30']:.2f} "
            f"| {r['detection_day'] or '-'} | {r['first_day_rows']} | {r['first_day_all_count']} |"
        )
    print(f"\nall seeds: {total_flags} false flags in {total_windows} windows = "
          f"{30 * total_flags / total_windows:.2f} per 30 windows; {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
