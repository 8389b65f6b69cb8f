"""What broken lines cost an ingest: a clean JSON-lines export against the same export with bad lines.

    python benchmarks/bench_ingest.py [--rows 1000000] [--bad 1,100] [--repeat 1] [--json]

Writes `--rows` synthetic outcomes as a nested camelCase JSON-lines export (cached under
`benchmarks/.data/`), then copies of it where 1 and 100 lines (spread evenly) are replaced by
a truncated JSON object. Each file is ingested with `opx-learning ingest --json` into a fresh,
initialised home, in its own process; the time is the wall time of that process, the memory
its peak RSS (`VmHWM`, read by the child itself just before it exits). The ratio columns are
dirty / clean; the target is at most 1.5 for both.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent / ".data"

# Run in the child: ingest through the CLI's entry point, then report the peak RSS.
_CHILD = """
import json, sys
from opx_learning.cli.main import main
try:
    main(["ingest", sys.argv[1], "--json"])
except SystemExit as stop:
    code = stop.code or 0
else:
    code = 0
peak = next(line for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({"exit": code, "peak_kb": int(peak.split()[1])}), file=sys.stderr)
"""


def export(rows: int) -> Path:
    """The clean export of `rows` outcomes (generated once)."""
    import polars as pl

    from opx_learning.core.synthetic import generate_outcomes

    path = DATA / f"ingest_{rows}.jsonl"
    if path.exists():
        return path
    DATA.mkdir(exist_ok=True)
    days = max(1, rows // 30_000)
    frame = generate_outcomes("2026-01-01", days=days, per_day=-(-rows // days) * 11 // 10, seed=7).head(rows)
    iso = "%Y-%m-%dT%H:%M:%S%.3fZ"
    nested = frame.select(
        pl.col("outcome_id").alias("outcomeId"),
        pl.col("incident_id").alias("incidentId"),
        pl.col("service"),
        pl.col("recorded_at").dt.strftime(iso).alias("recordedAt"),
        pl.col("validated_at").dt.strftime(iso).alias("validatedAt"),
        pl.struct(
            pl.col("true_positive").alias("truePositive"),
            pl.col("false_positive").alias("falsePositive"),
            pl.col("root_cause").alias("rootCause"),
            pl.col("resolution_type").cast(pl.String).alias("resolutionType"),
        ).alias("classification"),
        pl.struct(pl.col("ttd_ms").alias("ttd"), pl.col("ttr_ms").alias("ttr")).alias("timing"),
        pl.col("predicted_confidence").alias("predictedConfidence"),
        pl.struct(pl.col("human_confidence_rating").alias("confidenceRating")).alias("humanAssessment"),
    )
    nested.write_ndjson(path)
    return path


def dirty(clean: Path, bad: int, damage: str = "cut") -> Path:
    """A copy of `clean` with `bad` lines, spread evenly, made invalid JSON.

    `cut`: each line is cut in half; `middle`: two commas are put in the middle of each line,
    which still starts with `{` and ends with `}`, so the line reaches the JSON parser.
    """
    path = clean.with_name(f"{clean.stem}_{damage}{bad}.jsonl")
    if path.exists():
        return path
    lines = clean.read_bytes().split(b"\n")
    total = len(lines) - 1
    for number in range(bad):
        index = (number * 2 + 1) * total // (2 * bad)
        line = lines[index]
        half = len(line) // 2
        lines[index] = line[:half] if damage == "cut" else line[:half] + b",," + line[half:]
    path.write_bytes(b"\n".join(lines))
    return path


def measure(path: Path) -> dict[str, Any]:
    """Ingest `path` into a fresh home in a child process: wall seconds, peak RSS, the summary."""
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as scratch:
        home = Path(scratch) / "opx"
        env = {
            **os.environ,
            "OPX_HOME": str(home),
            "OPX_BACKEND": "local",
            "DAGSTER_HOME": str(Path(scratch) / "dagster_home"),
        }
        (Path(scratch) / "dagster_home").mkdir()
        subprocess.run([sys.executable, "-m", "opx_learning.cli.main", "init"], env=env, check=True,
                       capture_output=True)
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", _CHILD, str(path)], check=False, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - started
    status = json.loads(done.stderr.strip().splitlines()[-1])
    if status["exit"] != 0:
        raise SystemExit(f"ingest of {path} failed: {done.stderr[-2000:]}")
    summary = json.loads(done.stdout)
    return {
        "seconds": round(seconds, 2),
        "peak_mb": round(status["peak_kb"] / 1024),
        "read": summary["read"],
        "written": summary["written"],
        "rejected": summary["rejected"],
    }


def main() -> None:
    """Run the benchmark and print a Markdown table (or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--bad", default="1,100", help="comma-separated numbers of broken lines")
    parser.add_argument("--damage", choices=["cut", "middle"], default="cut",
                        help="how a line is broken: cut in half, or two commas put in its middle")
    parser.add_argument("--repeat", type=int, default=1, help="runs per file; the best time and memory are kept")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    clean = export(args.rows)
    cases = [("clean", clean)] + [(f"{bad} bad line{'s' if bad != 1 else ''} ({args.damage})", dirty(clean, bad, args.damage))
                                  for bad in (int(text) for text in args.bad.split(","))]
    load_before = os.getloadavg()
    results: list[dict[str, Any]] = []
    for label, path in cases:
        runs = [measure(path) for _ in range(args.repeat)]
        best = min(runs, key=lambda run: run["seconds"])
        best["peak_mb"] = min(run["peak_mb"] for run in runs)
        results.append({"case": label, **best})
    load_after = os.getloadavg()
    base = results[0]
    for row in results:
        row["time_ratio"] = round(row["seconds"] / base["seconds"], 2)
        row["memory_ratio"] = round(row["peak_mb"] / base["peak_mb"], 2)
    context = {
        "rows": args.rows,
        "file_mb": round(clean.stat().st_size / 2**20),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
    }
    if args.json:
        print(json.dumps({"context": context, "results": results}, indent=2))
        return
    print(f"{args.rows} rows, {context['file_mb']} MB, {context['cpus']} CPUs, "
          f"load average {context['load_average_before']} before, {context['load_average_after']} after")
    print()
    print("| file | s | peak RSS MB | time x clean | memory x clean | read | written | rejected |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in results:
        print(f"| {row['case']} | {row['seconds']} | {row['peak_mb']} | {row['time_ratio']} | {row['memory_ratio']} "
              f"| {row['read']} | {row['written']} | {row['rejected']} |")


if __name__ == "__main__":
    main()
