"""What the manifest of stored objects costs: writes and range reads with and without digest checks.

    python benchmarks/bench_manifest.py [--days 365] [--per-day 3000] [--repeat 3] [--json]

Generates `--days` days of synthetic outcomes and stores them twice in a fresh home: once in
a bare directory (no manifest, `LocalOutcomeStore(dir)`) and once through the home's outcome
store, which records every day file's SHA-256 in the manifest of `state.db`. It then times,
best of `--repeat`:

- `write`: storing every day (merge, Parquet encode, rename; plus the digest and the manifest
  row in one transaction for the checked store);
- `range run`: what a range run does with the stored days, `scan` of the whole window then
  `extract_patterns` and `calibrate`, where the checked store first hashes every day file and
  compares it with the manifest (one indexed query).

The overhead column is (checked - bare) / bare.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _best(repeat: int, action: Callable[[], Any]) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    """Run the benchmark and print a Markdown table (or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--per-day", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # the synthetic year has no baseline for emerging root causes

    from datetime import date, timedelta

    from opx_learning import Settings, calibrate, extract_patterns
    from opx_learning.backends import backend_for
    from opx_learning.core.synthetic import generate_outcomes
    from opx_learning.core.windows import Window
    from opx_learning.safety.state import initialise
    from opx_learning.stores.outcomes import LocalOutcomeStore

    end = date(2026, 1, 1)
    start = end - timedelta(days=args.days)
    frame = generate_outcomes(start.isoformat(), end.isoformat(), per_day=args.per_day, seed=11)
    window = Window.parse(start.isoformat(), end.isoformat())
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="opx-bench-manifest-") as tmp:
        settings = Settings(home=Path(tmp) / "opx")
        initialise(settings)
        stores = {
            "bare": lambda round_: LocalOutcomeStore(Path(tmp) / f"bare{round_}"),
            "checked": lambda round_: backend_for(settings.__class__(home=Path(tmp) / f"home{round_}")).outcome_store(),
        }
        for round_ in range(args.repeat):
            initialise(settings.__class__(home=Path(tmp) / f"home{round_}"))
        timings: dict[str, dict[str, float]] = {"write": {}, "range run": {}}
        for name, make in stores.items():
            counter = iter(range(args.repeat))
            timings["write"][name] = _best(args.repeat, lambda make=make, counter=counter: make(next(counter)).write(frame))
            store = make(0)

            def run(store: Any = store) -> None:
                data = store.scan(window).collect()
                extract_patterns(data, window.start, window.end)
                calibrate(data, window.start, window.end)

            timings["range run"][name] = _best(args.repeat, run)
        size = sum(path.stat().st_size for path in (Path(tmp) / "bare0").rglob("*.parquet"))
    for step, by in timings.items():
        rows.append({
            "step": step, "bare_s": round(by["bare"], 3), "checked_s": round(by["checked"], 3),
            "overhead": round((by["checked"] - by["bare"]) / by["bare"], 3),
        })
    meta = {
        "python": platform.python_version(), "cpus": os.cpu_count(), "days": args.days, "rows": frame.height,
        "parquet_mib": round(size / 2**20, 1), "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    if args.json:
        print(json.dumps({"meta": meta, "rows": rows}, indent=2))
        return
    print(f"{frame.height:,} outcomes over {args.days} day files ({meta['parquet_mib']} MiB Parquet), "
          f"CPython {meta['python']}, {meta['cpus']} CPUs, load {meta['load_average']}, best of {args.repeat}\n")
    print("| step | bare (s) | with manifest (s) | overhead |")
    print("|---|---:|---:|---:|")
    for row in rows:
        print(f"| {row['step']} | {row['bare_s']:.3f} | {row['checked_s']:.3f} | {row['overhead']:+.1%} |")


if __name__ == "__main__":
    main()
