"""Backfill benchmark: one daily partition vs a 31-day range of pattern summaries (one run each).

    python benchmarks/bench_backfill.py [--per-day 400] [--repeat 3] [--json]
    python benchmarks/bench_backfill.py --ranges 31,365,699 [--per-day 200] [--json]

`--ranges` measures the per-partition cost of long single-run ranges instead: for each
range length N it seeds N days into a fresh OPX_HOME / DAGSTER_HOME and materializes, in
one run each, `daily_outcomes`, `pattern_summaries_daily` and `learning_snapshots_daily`
over the N days, reporting wall and CPU milliseconds per partition (CPU is this process's
user + system time, steadier than wall time on a shared machine) and the load average.

Seeds synthetic outcomes into a temporary OPX_HOME, materializes `daily_outcomes`
once for the whole range (so both timings read the same validated days), then
times `pattern_summaries_daily` for one partition and for the 31 partitions of a
month on a real SQLite-backed Dagster instance in a temporary DAGSTER_HOME. The
issue's bar: the 31-day run takes under 3x the one-day run (the per-run overhead
is paid once, not per day).

It then times the user path: the same 1 and 31 partitions through the CLI as a user
runs them (`opx-learning trigger extract-patterns --start 2026-01-31 --end
2026-02-01` and `--start 2026-01-01 --end 2026-02-01`), each a fresh subprocess
(wall time: interpreter start, imports, guard, rate limit, the Dagster run), on the
same OPX_HOME and DAGSTER_HOME as above (so `daily_outcomes` is already there and
the instance's run history grows as a user's would). The rate limit of manual
PATTERN_EXTRACTION triggers is raised for the benchmark (OPX_RATE_LIMITS).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    """Run the benchmark and print a Markdown table (or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-day", type=int, default=400, help="mean outcomes per day")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per case (best is reported)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    parser.add_argument("--ranges", help="comma-separated range lengths in days (e.g. 31,365,699): per-partition cost")
    args = parser.parse_args()
    if args.ranges:
        _ranges([int(days) for days in args.ranges.split(",")], args.per_day, args.json)
        return

    with tempfile.TemporaryDirectory(prefix="opx-bench-") as tmp:
        os.environ["OPX_HOME"] = str(Path(tmp) / "opx")
        os.environ["DAGSTER_HOME"] = str(Path(tmp) / "dagster_home")
        Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True)
        os.environ.pop("OPX_BACKEND", None)

        import dagster as dg

        from opx_learning.app import launch
        from opx_learning.cli.orchestration import DEFAULT_DAGSTER_YAML
        from opx_learning.config import Settings
        from opx_learning.core.synthetic import generate_outcomes
        from opx_learning.stores.outcomes import outcome_store

        (Path(os.environ["DAGSTER_HOME"]) / "dagster.yaml").write_text(DEFAULT_DAGSTER_YAML)
        settings = Settings.from_env()
        outcome_store(settings).write(generate_outcomes("2026-01-01", "2026-02-01", per_day=args.per_day, seed=1))
        days = [f"2026-01-{d:02d}" for d in range(1, 32)]
        with dg.DagsterInstance.get() as instance:
            prepared = launch.materialize(settings, instance, ["daily_outcomes"], days)
            assert prepared.success, prepared.failures

            def timed(partitions: list[str]) -> list[float]:
                seconds = []
                for _ in range(args.repeat):
                    started = time.perf_counter()
                    run = launch.materialize(settings, instance, ["pattern_summaries_daily"], partitions)
                    seconds.append(time.perf_counter() - started)
                    assert run.success, run.failures
                return seconds

            timed(days[:1])  # warm-up: imports, first SQLite writes
            one, month = timed(days[-1:]), timed(days)
        cli_one, cli_month = _cli_timed("2026-01-31", args.repeat), _cli_timed("2026-01-01", args.repeat)
    result = {
        "per_day": args.per_day,
        "one_partition_s": min(one),
        "thirty_one_partitions_s": min(month),
        "ratio": min(month) / min(one),
        "median_one_s": statistics.median(one),
        "median_thirty_one_s": statistics.median(month),
        "cli_one_partition_s": min(cli_one),
        "cli_thirty_one_partitions_s": min(cli_month),
        "cli_ratio": min(cli_month) / min(cli_one),
        "cli_median_one_s": statistics.median(cli_one),
        "cli_median_thirty_one_s": statistics.median(cli_month),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"### bench_backfill: pattern_summaries_daily, ~{args.per_day} outcomes/day, best of {args.repeat}\n")
    print("| run | seconds (best) | seconds (median) |\n|---|---:|---:|")
    print(f"| 1 partition | {result['one_partition_s']:.2f} | {result['median_one_s']:.2f} |")
    print(f"| 31 partitions, one run | {result['thirty_one_partitions_s']:.2f} | {result['median_thirty_one_s']:.2f} |")
    print(f"\nratio 31 / 1 = {result['ratio']:.2f}x (bar: < 3x)")
    print("\n#### user path: `opx-learning trigger extract-patterns`, one subprocess per run\n")
    print("| command | seconds (best) | seconds (median) |\n|---|---:|---:|")
    print(f"| --start 2026-01-31 --end 2026-02-01 | {result['cli_one_partition_s']:.2f} | {result['cli_median_one_s']:.2f} |")
    print(
        f"| --start 2026-01-01 --end 2026-02-01 | {result['cli_thirty_one_partitions_s']:.2f} "
        f"| {result['cli_median_thirty_one_s']:.2f} |"
    )
    print(f"\nratio 31 / 1 = {result['cli_ratio']:.2f}x")


RANGE_ASSETS = ("daily_outcomes", "pattern_summaries_daily", "learning_snapshots_daily")


def _ranges(lengths: list[int], per_day: int, as_json: bool) -> None:
    """Per-partition wall and CPU time of single-run ranges of each length, each in a fresh home."""
    rows = []
    for days in lengths:
        # A fresh process per length: its Dagster instance and imports are its own.
        done = subprocess.run(
            [sys.executable, __file__, "--per-day", str(per_day), "--_range", str(days)],
            check=False,
            capture_output=True,
            text=True,
        )
        if done.returncode:
            raise SystemExit(f"range {days} failed ({done.returncode}): {done.stderr[-2000:]}")
        rows.extend(json.loads(done.stdout.strip().splitlines()[-1]))
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    print(f"### bench_backfill --ranges: ~{per_day} outcomes/day, one run per asset and range\n")
    print("| asset | days | run seconds | ms / partition | CPU ms / partition | load average |")
    print("|---|---:|---:|---:|---:|---|")
    for row in rows:
        print(
            f"| {row['asset']} | {row['days']} | {row['seconds']:.1f} | {row['ms_per_partition']:.1f}"
            f" | {row['cpu_ms_per_partition']:.1f} | {row['load_average']} |"
        )
    if len(lengths) > 1:
        # The cost of one more partition, without the run's fixed cost: the slope between the
        # shortest and the longest range.
        short, long = min(lengths), max(lengths)
        print(f"\n| asset | marginal ms / partition ({short} -> {long} days) |\n|---|---:|")
        for asset in dict.fromkeys(row["asset"] for row in rows):
            seconds = {row["days"]: row["seconds"] for row in rows if row["asset"] == asset}
            print(f"| {asset} | {(seconds[long] - seconds[short]) * 1000 / (long - short):.1f} |")


def _one_range(days: int, per_day: int) -> list[dict[str, object]]:
    import resource
    from datetime import date, timedelta

    with tempfile.TemporaryDirectory(prefix="opx-bench-range-") as tmp:
        os.environ["OPX_HOME"] = str(Path(tmp) / "opx")
        os.environ["DAGSTER_HOME"] = str(Path(tmp) / "dagster_home")
        Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True)
        os.environ.pop("OPX_BACKEND", None)
        first = date(2024, 1, 1)
        os.environ["OPX_PARTITIONS_START"] = first.isoformat()

        import dagster as dg

        from opx_learning.app import launch
        from opx_learning.cli.orchestration import DEFAULT_DAGSTER_YAML
        from opx_learning.config import Settings
        from opx_learning.core.synthetic import generate_outcomes
        from opx_learning.safety.state import ensure_initialised
        from opx_learning.stores.outcomes import outcome_store

        (Path(os.environ["DAGSTER_HOME"]) / "dagster.yaml").write_text(DEFAULT_DAGSTER_YAML)
        settings = Settings.from_env()
        ensure_initialised(settings)
        end = first + timedelta(days=days)
        outcome_store(settings).write(generate_outcomes(first.isoformat(), end.isoformat(), per_day=per_day, seed=1))
        keys = [(first + timedelta(days=i)).isoformat() for i in range(days)]
        rows = []
        with dg.DagsterInstance.get() as instance:
            launch.materialize(settings, instance, ["daily_outcomes"], keys[:1])  # warm-up: imports, first writes
            for asset in RANGE_ASSETS:
                usage = resource.getrusage(resource.RUSAGE_SELF)
                cpu, began = usage.ru_utime + usage.ru_stime, time.perf_counter()
                run = launch.materialize(settings, instance, [asset], keys)
                elapsed = time.perf_counter() - began
                usage = resource.getrusage(resource.RUSAGE_SELF)
                assert run.success, run.failures
                rows.append(
                    {
                        "asset": asset,
                        "days": days,
                        "seconds": elapsed,
                        "ms_per_partition": elapsed * 1000 / days,
                        "cpu_ms_per_partition": (usage.ru_utime + usage.ru_stime - cpu) * 1000 / days,
                        "load_average": " / ".join(f"{value:.1f}" for value in os.getloadavg()),
                    }
                )
        return rows


def _cli_timed(start: str, repeat: int) -> list[float]:
    """Wall times of `opx-learning trigger extract-patterns --start START --end 2026-02-01` subprocesses."""
    env = dict(os.environ, OPX_RATE_LIMITS="PATTERN_EXTRACTION=100")
    # The console script a user types; `python -m` when it is not on PATH.
    script = shutil.which("opx-learning")
    command = [script] if script else [sys.executable, "-m", "opx_learning.cli.main"]
    command += ["trigger", "extract-patterns"]
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        done = subprocess.run(
            [*command, "--start", start, "--end", "2026-02-01", "--json"],
            check=False,
            env=env,
            capture_output=True,
            text=True,
        )
        seconds.append(time.perf_counter() - started)
        if done.returncode:
            raise SystemExit(f"trigger failed ({done.returncode}): {done.stderr or done.stdout}")
    return seconds


if __name__ == "__main__":
    if len(sys.argv) > 1 and "--_range" in sys.argv:
        position = sys.argv.index("--_range")
        per_day = int(sys.argv[sys.argv.index("--per-day") + 1]) if "--per-day" in sys.argv else 200
        print(json.dumps(_one_range(int(sys.argv[position + 1]), per_day)))
    else:
        main()
