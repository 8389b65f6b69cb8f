"""extract_patterns + calibrate on one Parquet file, eager DataFrame or scan_parquet input (a script, not a test).

    python benchmarks/bench_eager_vs_scan.py eager FILE [--repeat 3]
    python benchmarks/bench_eager_vs_scan.py scan FILE [--repeat 3]

Prints one JSON line: wall and CPU seconds of each run (CPU = user + system of all
threads), the process's peak RSS (VmHWM) and a digest of the results, so two checkouts
(e.g. `PYTHONPATH=/tmp/old`) can be compared on the same file. FILE is a file written by
`bench_core.py` (30 days from 2026-01-01).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import time
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from opx_learning.core.calibration import calibrate
from opx_learning.core.patterns import extract_patterns


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_gib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main() -> None:
    """Run the timed calls and print the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("eager", "scan"))
    parser.add_argument("file", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # the synthetic file has no emerging-cause baseline
    start = datetime(2026, 1, 1, tzinfo=UTC)
    end = start + timedelta(days=30)
    frame = pl.read_parquet(args.file) if args.mode == "eager" else None
    runs = []
    for _ in range(args.repeat):
        began, cpu = time.perf_counter(), _cpu()
        summaries = extract_patterns(frame if frame is not None else pl.scan_parquet(args.file), start, end)
        extracted = time.perf_counter()
        calibration = calibrate(frame if frame is not None else pl.scan_parquet(args.file), start, end)
        runs.append(
            {
                "seconds": time.perf_counter() - began,
                "extract_seconds": extracted - began,
                "cpu_seconds": _cpu() - cpu,
            }
        )
    content = summaries.write_json().encode() + json.dumps(calibration.to_dict(), sort_keys=True).encode()
    print(json.dumps({"mode": args.mode, "runs": runs, "peak_rss_gib": _peak_gib(), "digest": hashlib.sha256(content).hexdigest()[:12]}))


if __name__ == "__main__":
    main()
