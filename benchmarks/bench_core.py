"""Benchmark of the functional core on N synthetic outcomes (a script, not a test).

    python benchmarks/bench_core.py --rows 1000000
    python benchmarks/bench_core.py --rows 10000000 --json
    python benchmarks/bench_core.py --ratios          # every bar's ratio in one run

Generates N outcomes over 30 days and 12 services (vectorised numpy, seeded, cached
as one Parquet file under benchmarks/.data/), then runs every step in a fresh
subprocess, so the peak RSS reported belongs to that step alone (Linux:
/proc/self/status VmHWM; ru_maxrss elsewhere). Times are the best of --repeat runs
(wall clock; CPU = user + sys of all threads). Steps:

- validate / extract / extract_emerging / calibrate: the core function alone on a
  frame already read from Parquet (read time excluded; RSS includes the frame);
- pipeline: read the 10 columns the core uses + extract_patterns + calibrate;
- floor: polars scanning the same 10 columns, filtering the window and doing one
  group-by over service (the least work that touches the same data);
- pipeline_eager / floor_eager: the same with every column read eagerly;
- store_pipeline: the same 10 columns read through the day-partitioned
  LocalOutcomeStore (written once from the Parquet file) + extract_patterns + calibrate;
- floor_full: the quantile floor, the same scan and one group-by over service with the
  count, TP/FP sums, four means, p50/p90 of both durations, root-cause and resolution
  counts and the five band means of predicted_confidence;
- per_record: a straightforward record-at-a-time Python implementation of the
  same summary and calibration bands, rows read from the Parquet as dicts;
  above --per-record-max rows it is timed on the first rows and extrapolated
  linearly (the output says so).

`--ratios` prints every bar in one run: at 2M rows `pipeline` against `floor` and
`pipeline_eager` against `floor_eager`, at 5M `pipeline` against `floor_full`, each pair
run --reps times interleaved (each run a fresh process) and compared by their medians;
then `core_lazy` (extract_patterns + calibrate over pl.scan_parquet) once at 10M, 40M
and 100M for the 40M / 10M time and the 100M peak RSS; load averages throughout.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import resource
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

HERE = Path(__file__).resolve().parent
START = datetime(2026, 1, 1, tzinfo=UTC)
DAYS = 30
SERVICES = (
    "auth",
    "billing",
    "catalog",
    "checkout",
    "email",
    "gateway",
    "inventory",
    "notifications",
    "payments",
    "recommendations",
    "search",
    "shipping",
)
ROOT_CAUSES = (
    "disk full",
    "memory leak",
    "connection pool exhausted",
    "certificate expired",
    "bad deploy",
    "config drift",
    "dns resolution failure",
    "dependency timeout",
    "cpu throttling",
    "database deadlock",
    "cache stampede",
    "rate limit exceeded",
    "network partition",
    "queue backlog",
    "thread starvation",
    "clock skew",
    "schema migration lock",
    "oom kill",
    "noisy neighbour",
    "feature flag misconfiguration",
    "upstream 5xx",
    "slow query",
    "garbage collection pause",
    "load balancer misroute",
)
# The columns extract_patterns and calibrate read (all but outcome_id, incident_id, validated_at).
CORE_COLUMNS = (
    "service",
    "recorded_at",
    "true_positive",
    "false_positive",
    "root_cause",
    "resolution_type",
    "ttd_ms",
    "ttr_ms",
    "predicted_confidence",
    "human_confidence_rating",
)
RESOLUTIONS = ("FIXED", "MITIGATED", "FALSE_ALARM", "DUPLICATE", "OTHER")
STEPS = (
    "validate",
    "extract",
    "extract_emerging",
    "calibrate",
    "pipeline",
    "floor",
    "pipeline_eager",
    "floor_eager",
    "floor_full",
    "store_pipeline",
    "per_record",
)
GIB = 1024**3
# Part of the cache file name: bump when `generate` changes.
GENERATOR_VERSION = 3
# Rows generated at once; bigger data sets are generated in time slices of this many rows.
PART_ROWS = 5_000_000
# Window sizes of the scaling table (plus --rows when larger).
SCALING_ROWS = (1_000_000, 10_000_000, 40_000_000)


# --------------------------------------------------------------------------- data


def generate(rows: int, seed: int = 0, part: int = 0, parts: int = 1, first_id: int = 0) -> pl.DataFrame:
    """N canonical outcomes over 30 days (or over slice `part` of `parts` equal slices of them), sorted by recorded_at."""
    from opx_learning.core.schema import OUTCOME_SCHEMA

    rng = np.random.default_rng(seed if parts == 1 else [seed, part])
    span_us = DAYS * 86_400 * 1_000_000
    offsets = np.sort(rng.integers(span_us * part // parts, span_us * (part + 1) // parts, rows, dtype=np.int64))
    weights = 1.0 / np.arange(1, len(SERVICES) + 1)
    service_idx = rng.choice(len(SERVICES), rows, p=weights / weights.sum())
    fp_rate = np.linspace(0.05, 0.45, len(SERVICES))[service_idx]
    draw = rng.random(rows)
    false_positive = draw < fp_rate
    true_positive = (~false_positive) & (draw < 0.985)  # ~1.5% are neither
    confidence = np.where(true_positive, rng.beta(6, 2, rows), rng.beta(3, 3, rows))
    confidence_null = rng.random(rows) < 0.03
    human = rng.random(rows)
    human_null = rng.random(rows) < 0.4
    cause_weights = 1.0 / np.arange(1, len(ROOT_CAUSES) + 1) ** 1.1
    cause_idx = rng.choice(len(ROOT_CAUSES), rows, p=cause_weights / cause_weights.sum())
    # Messy spellings: upper-cased or padded variants of the same cause.
    variant = rng.choice(3, rows, p=[0.9, 0.06, 0.04])
    spellings = [*ROOT_CAUSES, *(c.upper() for c in ROOT_CAUSES), *(f" {c.replace(' ', '  ')} " for c in ROOT_CAUSES)]
    cause_code = cause_idx + variant * len(ROOT_CAUSES)
    resolution_code = np.where(
        false_positive,
        np.where(rng.random(rows) < 0.9, 2, 4),
        rng.choice([0, 1, 3, 4], rows, p=[0.6, 0.3, 0.07, 0.03]),
    )
    ttd = rng.lognormal(11, 1.0, rows)
    ttr = rng.lognormal(14, 1.2, rows)
    validated_delay = rng.integers(60_000_000, 3_600_000_000, rows, dtype=np.int64)
    ids = pl.Series("ids", np.arange(first_id, first_id + rows, dtype=np.int64)).cast(pl.String).str.zfill(10)
    start_us = int(START.timestamp() * 1_000_000)
    return pl.DataFrame(
        {
            "outcome_id": "out-" + ids,
            "incident_id": "inc-" + ids,
            "service": pl.Series(SERVICES).gather(service_idx),
            "recorded_at": pl.Series(offsets + start_us).cast(pl.Datetime("us", "UTC")),
            "validated_at": pl.Series(offsets + start_us + validated_delay).cast(pl.Datetime("us", "UTC")),
            "true_positive": true_positive,
            "false_positive": false_positive,
            "root_cause": pl.Series(spellings).gather(cause_code),
            "resolution_type": pl.Series(RESOLUTIONS).gather(resolution_code),
            "ttd_ms": ttd,
            "ttr_ms": ttr,
            "predicted_confidence": pl.Series(np.where(confidence_null, np.nan, confidence)).fill_nan(None),
            "human_confidence_rating": pl.Series(np.where(human_null, np.nan, human)).fill_nan(None),
        }
    ).cast(OUTCOME_SCHEMA)


def dataset(rows: int, data_dir: Path) -> Path:
    """The cached Parquet file of `rows` outcomes, generated on first use.

    Above PART_ROWS the rows are generated in time slices of at most PART_ROWS, each written
    to its own file, and streamed into the one file (memory bounded by a slice, not the total).
    """
    path = data_dir / f"outcomes-v{GENERATOR_VERSION}-{rows}.parquet"
    if path.exists():
        return path
    data_dir.mkdir(parents=True, exist_ok=True)
    temp = path.with_suffix(".tmp")
    parts = -(-rows // PART_ROWS)
    if parts == 1:
        generate(rows).write_parquet(temp, statistics=True, row_group_size=1_000_000)
    else:
        sizes = [rows // parts + (1 if k < rows % parts else 0) for k in range(parts)]
        files = [path.with_suffix(f".part{k}") for k in range(parts)]
        try:
            for k, (size, file) in enumerate(zip(sizes, files, strict=True)):
                generate(size, part=k, parts=parts, first_id=sum(sizes[:k])).write_parquet(file, statistics=True)
            pl.scan_parquet(files).sink_parquet(temp, statistics=True, row_group_size=1_000_000)
        finally:
            for file in files:
                file.unlink(missing_ok=True)
    os.replace(temp, path)
    return path


def _store_dir(path: Path) -> Path:
    return path.with_name(path.stem + "-store")


def dataset_store(path: Path) -> Path:
    """The day-partitioned LocalOutcomeStore holding the same rows, written on first use (in a subprocess)."""
    root = _store_dir(path)
    if not (root / ".complete").exists():
        command = [sys.executable, __file__, "--prepare-store", "--path", str(path)]
        subprocess.run(command, check=True)
    return root


def _prepare_store(path: Path) -> None:
    from opx_learning.stores.outcomes import LocalOutcomeStore

    root = _store_dir(path)
    LocalOutcomeStore(root).write(pl.read_parquet(path))
    (root / ".complete").touch()


# --------------------------------------------------------------------------- steps


def _peak_rss_bytes() -> int:
    """Peak resident set size of this process.

    On Linux `ru_maxrss` carries over the parent's high-water mark through fork + exec,
    so a lean child would report the driver's peak; /proc/self/status `VmHWM` belongs
    to this process image alone and is used when available.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    # ru_maxrss is in kilobytes on Linux, bytes on macOS.
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _window() -> tuple[datetime, datetime]:
    return START, START + timedelta(days=DAYS)


_CPU: dict[str, float] = {}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _best_of(repeat: int, action: Callable[[], Any]) -> tuple[float, Any]:
    """Run `action` `repeat` times; the fastest wall time (its CPU time in `_CPU`) and the last result."""
    best, result = math.inf, None
    for _ in range(max(repeat, 1)):
        began, cpu = time.perf_counter(), _cpu_seconds()
        result = action()
        elapsed = time.perf_counter() - began
        if elapsed < best:
            best, _CPU["seconds"] = elapsed, _cpu_seconds() - cpu
    return best, result


def run_step(step: str, path: Path, per_record_max: int, repeat: int = 1) -> dict[str, Any]:
    """Run one step in this process and return its best wall time of `repeat` runs and facts."""
    # Imported before any clock starts: import time (scipy) is not the step's cost.
    from opx_learning.core.calibration import calibrate
    from opx_learning.core.patterns import extract_patterns
    from opx_learning.core.validation import validate_outcomes

    start, end = _window()
    middle = start + timedelta(days=DAYS // 2)
    info: dict[str, Any] = {"step": step}
    if step in ("validate", "extract", "extract_emerging", "calibrate"):
        frame = pl.read_parquet(path)
        info["rows"] = frame.height
        if step == "validate":
            info["seconds"], result = _best_of(repeat, lambda: validate_outcomes(frame))
            info["detail"] = f"valid {result.valid.height:,}, rejected {result.rejected.height:,}"
        elif step == "extract":
            info["seconds"], summaries = _best_of(repeat, lambda: extract_patterns(frame, start, end))
            info["detail"] = f"{summaries.height} summary rows, window {DAYS} days"
        elif step == "extract_emerging":
            info["seconds"], summaries = _best_of(repeat, lambda: extract_patterns(frame, middle, end))
            emerging = summaries["emerging_root_causes"].list.len().sum()
            info["detail"] = f"last {DAYS - DAYS // 2} days vs the {DAYS // 2} before; {emerging} emerging entries"
        else:
            info["seconds"], calibration = _best_of(repeat, lambda: calibrate(frame, start, end))
            info["detail"] = f"ece {calibration.ece:.4f}, skipped {calibration.skipped_count:,}"
    elif step in ("pipeline", "pipeline_eager"):

        def pipeline() -> int:
            columns = None if step == "pipeline_eager" else list(CORE_COLUMNS)
            frame = pl.read_parquet(path, columns=columns)
            extract_patterns(frame, start, end)
            calibrate(frame, start, end)
            return frame.height

        info["seconds"], info["rows"] = _best_of(repeat, pipeline)
        info["detail"] = (
            "read_parquet (all 13 columns) + extract_patterns + calibrate"
            if step == "pipeline_eager"
            else "read_parquet of the 10 columns the core reads + extract_patterns + calibrate"
        )
    elif step in ("floor", "floor_eager"):

        def floor() -> int:
            source = pl.read_parquet(path).lazy() if step == "floor_eager" else pl.scan_parquet(path)
            recorded = pl.col("recorded_at")
            done = (
                source.filter((recorded >= start) & (recorded < end))
                .group_by("service")
                .agg(
                    pl.len(),
                    pl.col("true_positive").sum(),
                    pl.col("false_positive").sum(),
                    pl.col("ttd_ms").mean(),
                    pl.col("ttr_ms").mean(),
                    pl.col("human_confidence_rating").mean(),
                    pl.col("predicted_confidence").mean(),
                    pl.col("root_cause").count(),
                    pl.col("resolution_type").count(),
                )
                .collect()
            )
            return int(done["len"].sum())

        info["seconds"], info["rows"] = _best_of(repeat, floor)
        info["detail"] = (
            "read_parquet (all 13 columns) + window filter + one group_by(service)"
            if step == "floor_eager"
            else "scan_parquet (the same 10 columns) + window filter + one group_by(service)"
        )
    elif step == "floor_full":
        recorded, confidence = pl.col("recorded_at"), pl.col("predicted_confidence")
        band = pl.sum_horizontal(*((confidence >= lower).cast(pl.Int8) for lower in (0.2, 0.4, 0.6, 0.8)))

        def floor_full() -> int:
            done = (
                pl.scan_parquet(path)
                .filter((recorded >= start) & (recorded < end))
                .group_by("service")
                .agg(
                    pl.len(),
                    pl.col("true_positive").sum(),
                    pl.col("false_positive").sum(),
                    pl.col("ttd_ms", "ttr_ms", "human_confidence_rating", "predicted_confidence").mean(),
                    *(
                        pl.col(c).quantile(q, interpolation="linear").alias(f"{c}_p{round(q * 100)}")
                        for c in ("ttd_ms", "ttr_ms")
                        for q in (0.5, 0.9)
                    ),
                    pl.col("root_cause").value_counts().alias("root_causes"),
                    pl.col("resolution_type").value_counts().alias("resolutions"),
                    *(confidence.filter(band == b).mean().alias(f"band_{b}") for b in range(5)),
                )
                .collect()
            )
            return int(done["len"].sum())

        info["seconds"], info["rows"] = _best_of(repeat, floor_full)
        info["detail"] = (
            "scan_parquet (the same 10 columns) + window filter + one group_by(service): count, TP/FP sums,"
            " four means, p50/p90 of ttd_ms and ttr_ms, root-cause and resolution counts, five band means"
        )
    elif step == "core_lazy":
        times: dict[str, float] = {}

        def core_lazy() -> int:
            began = time.perf_counter()
            summaries = extract_patterns(pl.scan_parquet(path), start, end)
            times["extract"] = time.perf_counter() - began
            calibrate(pl.scan_parquet(path), start, end)
            times["calibrate"] = time.perf_counter() - began - times["extract"]
            return int(summaries.filter(pl.col("service") == "ALL")["total_incidents"].item())

        info["seconds"], info["rows"] = _best_of(repeat, core_lazy)
        info["extract_seconds"], info["calibrate_seconds"] = times["extract"], times["calibrate"]
        info["detail"] = "extract_patterns + calibrate, each over pl.scan_parquet(file)"
    elif step in ("floor_scan", "floor_quantile"):
        recorded = pl.col("recorded_at")
        if step == "floor_scan":
            aggregations = [
                pl.len(),
                *(pl.col(c).mean() for c in ("ttd_ms", "ttr_ms", "human_confidence_rating", "predicted_confidence")),
            ]
        else:
            aggregations = [
                pl.col(c).quantile(q, interpolation="linear").alias(f"{c}_{q}")
                for c in ("ttd_ms", "ttr_ms")
                for q in (0.5, 0.9)
            ]

        def floor_query() -> int:
            query = pl.scan_parquet(path).filter((recorded >= start) & (recorded < end))
            return query.group_by("service").agg(aggregations).collect(engine="streaming").height

        info["seconds"], _ = _best_of(repeat, floor_query)
        info["rows"] = pl.scan_parquet(path).select(pl.len()).collect().item()
        info["detail"] = (
            "scan_parquet + window filter + group_by(service): count and four means (streaming engine)"
            if step == "floor_scan"
            else "scan_parquet + window filter + group_by(service): p50/p90 of ttd_ms and ttr_ms (streaming engine)"
        )
    elif step == "store_pipeline":
        from opx_learning.core.windows import Window
        from opx_learning.stores.outcomes import LocalOutcomeStore

        store = LocalOutcomeStore(_store_dir(path))

        def store_pipeline() -> int:
            frame = store.scan(Window(start, end)).select(CORE_COLUMNS).collect()
            extract_patterns(frame, start, end)
            calibrate(frame, start, end)
            return frame.height

        info["seconds"], info["rows"] = _best_of(repeat, store_pipeline)
        info["detail"] = f"LocalOutcomeStore.scan({DAYS} day files) of the 10 columns + extract_patterns + calibrate"
    elif step == "per_record":
        total = pl.scan_parquet(path).select(pl.len()).collect().item()
        sample = min(total, per_record_max)
        elapsed, _ = _best_of(1, lambda: per_record_summary(path, sample))
        info["rows"] = total
        info["measured_rows"] = sample
        info["measured_seconds"] = elapsed
        info["seconds"] = elapsed * total / sample
        info["detail"] = (
            f"timed once on the first {sample:,} rows ({elapsed:.1f} s), extrapolated linearly"
            if sample < total
            else "timed once on all rows"
        )
    else:
        raise SystemExit(f"--step: {step!r} is not one of {', '.join(STEPS)}")
    info["cpu_seconds"] = _CPU.get("seconds")
    if step == "per_record" and info["cpu_seconds"] is not None:
        info["cpu_seconds"] *= info["rows"] / info["measured_rows"]
    info["peak_rss_bytes"] = _peak_rss_bytes()
    return info


# --------------------------------------------------------------------------- per-record baseline

_SPACES = re.compile(r"\s+")


def _percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    position = (len(sorted_values) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def per_record_summary(path: Path, rows: int) -> dict[str, Any]:
    """Record-at-a-time summary per service (+ ALL) and calibration bands, as a service would."""
    stats: dict[str, dict[str, Any]] = defaultdict(
        lambda: {
            "n": 0,
            "tp": 0,
            "fp": 0,
            "human_sum": 0.0,
            "human_n": 0,
            "ttd": [],
            "ttr": [],
            "causes": Counter(),
            "spellings": defaultdict(Counter),
            "resolutions": Counter(),
        }
    )
    bands = [{"n": 0, "tp": 0, "conf": 0.0} for _ in range(5)]
    brier = 0.0
    calibrated = 0
    for batch in pl.read_parquet(path, n_rows=rows).iter_slices(100_000):
        for record in batch.iter_rows(named=True):
            for key in (record["service"], "ALL"):
                s = stats[key]
                s["n"] += 1
                s["tp"] += record["true_positive"]
                s["fp"] += record["false_positive"]
                if record["human_confidence_rating"] is not None:
                    s["human_sum"] += record["human_confidence_rating"]
                    s["human_n"] += 1
                s["ttd"].append(record["ttd_ms"])
                s["ttr"].append(record["ttr_ms"])
                cause = record["root_cause"]
                normalized = _SPACES.sub(" ", cause.strip()).casefold()
                s["causes"][normalized] += 1
                s["spellings"][normalized][cause] += 1
                s["resolutions"][record["resolution_type"]] += 1
            confidence = record["predicted_confidence"]
            if confidence is not None:
                band = bands[min(int(confidence * 5), 4)]
                band["n"] += 1
                band["tp"] += record["true_positive"]
                band["conf"] += confidence
                brier += (confidence - record["true_positive"]) ** 2
                calibrated += 1
    summaries = {}
    for service, s in stats.items():
        ttd, ttr = sorted(s["ttd"]), sorted(s["ttr"])
        top = sorted(s["causes"].items(), key=lambda item: (-item[1], item[0]))[:10]
        summaries[service] = {
            "total_incidents": s["n"],
            "fp_rate": s["fp"] / s["n"],
            "avg_confidence": s["human_sum"] / s["human_n"] if s["human_n"] else None,
            "avg_ttd_ms": sum(ttd) / len(ttd),
            "p50_ttd_ms": _percentile(ttd, 0.5),
            "p90_ttd_ms": _percentile(ttd, 0.9),
            "avg_ttr_ms": sum(ttr) / len(ttr),
            "p50_ttr_ms": _percentile(ttr, 0.5),
            "p90_ttr_ms": _percentile(ttr, 0.9),
            "top_root_causes": [
                (s["spellings"][key].most_common(1)[0][0], count, count / s["n"]) for key, count in top
            ],
            "top_resolutions": s["resolutions"].most_common(10),
        }
    drift = [b["tp"] / b["n"] - b["conf"] / b["n"] for b in bands if b["n"]]
    return {"summaries": summaries, "drift": drift, "brier": brier / max(calibrated, 1)}


# --------------------------------------------------------------------------- driver


def _load() -> str:
    try:
        return " / ".join(f"{value:.1f}" for value in os.getloadavg())
    except OSError:
        return "n/a"


def _subprocess_step(step: str, path: Path, per_record_max: int, repeat: int) -> dict[str, Any]:
    command = [
        sys.executable,
        __file__,
        *("--step", step, "--path", str(path)),
        *("--per-record-max", str(per_record_max), "--repeat", str(repeat)),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"step": step, "error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _bars(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    def seconds(step: str) -> float | None:
        return results.get(step, {}).get("seconds")

    extract, calibrate, per_record = seconds("extract"), seconds("calibrate"), seconds("per_record")
    core_steps = ("validate", "extract", "extract_emerging", "calibrate", "pipeline", "pipeline_eager", "store_pipeline")
    peaks = [results[s]["peak_rss_bytes"] for s in core_steps if "peak_rss_bytes" in results.get(s, {})]
    bars = []
    if extract is not None and calibrate is not None:
        both = extract + calibrate
        bars.append({"bar": "extract_patterns + calibrate", "value": f"{both:.2f} s", "target": "< 10 s", "met": both < 10})
    if peaks:
        peak = max(peaks)
        bars.append(
            {"bar": "peak RSS (core steps)", "value": f"{peak / GIB:.2f} GiB", "target": "< 6 GB", "met": peak < 6e9}
        )
    for suffix, label in (("", "the 10 core columns"), ("_eager", "all 13 columns")):
        pipeline, floor = seconds(f"pipeline{suffix}"), seconds(f"floor{suffix}")
        if pipeline is not None and floor:
            ratio = pipeline / floor
            bars.append(
                {
                    "bar": f"read + both vs polars floor ({label})",
                    "value": f"{ratio:.2f}x",
                    "target": "<= 4x (aim 3x)",
                    "met": ratio <= 4,
                }
            )
        if pipeline and per_record is not None:
            speedup = per_record / pipeline
            bars.append(
                {
                    "bar": f"speed-up vs per-record Python ({label})",
                    "value": f"{speedup:.1f}x",
                    "target": ">= 20x",
                    "met": speedup >= 20,
                }
            )
    return bars


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown tables."""
    lines = [
        f"### bench_core: {report['rows']:,} rows, {DAYS} days, {len(SERVICES)} services",
        "",
        f"{report['machine']}",
        "",
        "| step | seconds | CPU s | rows/s | peak RSS | notes |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for step in STEPS:
        item = report["steps"].get(step)
        if item is None:
            continue
        if "error" in item:
            lines.append(f"| {step} | - | - | - | - | error: {item['error']} |")
            continue
        rate = item["rows"] / item["seconds"] if item["seconds"] else float("inf")
        lines.append(
            f"| {step} | {item['seconds']:.2f} | {item['cpu_seconds']:.2f} | {rate:,.0f} |"
            f" {item['peak_rss_bytes'] / GIB:.2f} GiB |"
            f" {item.get('detail', '')} |"
        )
    lines += ["", "| bar | value | target | met |", "|---|---:|---|---|"]
    lines += [f"| {b['bar']} | {b['value']} | {b['target']} | {'yes' if b['met'] else 'NO'} |" for b in report["bars"]]
    return "\n".join(lines)


SCALING_STEPS = ("floor_scan", "floor_quantile", "core_lazy")


def _warm(path: Path) -> None:
    """Read the file once so every step finds it in the page cache."""
    with path.open("rb") as handle:
        while handle.read(64 * 2**20):
            pass


def scaling(sizes: list[int], data_dir: Path, repeat: int | None) -> dict[str, Any]:
    """Core and floors over pl.scan_parquet of one file per size, each step in its own process."""
    results = []
    for rows in sizes:
        began = time.perf_counter()
        path = dataset(rows, data_dir)
        prepared = time.perf_counter() - began
        _warm(path)
        steps = {step: _subprocess_step(step, path, 0, repeat or (3 if rows <= 2_000_000 else 1)) for step in SCALING_STEPS}
        results.append({"rows": rows, "prepared_seconds": prepared, "load_average": _load(), "steps": steps})
    return {
        "machine": (
            f"{platform.python_implementation()} {platform.python_version()}, polars {pl.__version__}, "
            f"{os.cpu_count()} CPUs, {platform.machine()}"
        ),
        "sizes": results,
        "bars": _scaling_bars(results),
    }


def _scaling_bars(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    core = {r["rows"]: r["steps"]["core_lazy"] for r in results if "seconds" in r["steps"]["core_lazy"]}
    bars = []
    for rows, limit in ((40_000_000, 3.2), (100_000_000, 8.0)):
        if rows in core:
            peak = core[rows]["peak_rss_bytes"] / GIB
            bars.append(
                {"bar": f"peak RSS at {rows // 10**6}M", "value": f"{peak:.2f} GiB", "target": f"< {limit} GiB", "met": peak < limit}
            )
    if 10_000_000 in core and 40_000_000 in core:
        ratio = core[40_000_000]["seconds"] / core[10_000_000]["seconds"]
        bars.append({"bar": "time 40M / time 10M", "value": f"{ratio:.2f}x", "target": "<= 4.6x", "met": ratio <= 4.6})
    return bars


def scaling_markdown(report: dict[str, Any]) -> str:
    """The scaling report as Markdown tables."""
    lines = [
        f"### bench_core --scaling: {DAYS} days, {len(SERVICES)} services, one Parquet file per size",
        "",
        report["machine"],
        "",
        (
            "| rows | extract + calibrate | of which extract | x time at 10M | peak RSS | floor | core / floor"
            " | quantile floor | core / quantile floor | load average |"
        ),
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    base = next((r["steps"]["core_lazy"].get("seconds") for r in report["sizes"] if r["rows"] == 10_000_000), None)
    for item in report["sizes"]:
        floor, quantile, core = (item["steps"][step] for step in SCALING_STEPS)
        if "error" in core:
            lines.append(f"| {item['rows']:,} | error: {core['error']} | | | | | | | | |")
            continue

        def ratio(other: dict[str, Any], core: dict[str, Any] = core) -> str:
            return f"{core['seconds'] / other['seconds']:.1f}x" if other.get("seconds") else "-"

        def seconds(step: dict[str, Any]) -> str:
            return f"{step['seconds']:.2f} s" if "seconds" in step else "error"

        relative = f"{core['seconds'] / base:.2f}x" if base else "-"
        lines.append(
            f"| {item['rows']:,} | {core['seconds']:.2f} s | {core['extract_seconds']:.2f} s | {relative}"
            f" | {core['peak_rss_bytes'] / GIB:.2f} GiB | {seconds(floor)} | {ratio(floor)} | {seconds(quantile)}"
            f" | {ratio(quantile)} | {item['load_average']} |"
        )
    lines += ["", "| bar | value | target | met |", "|---|---:|---|---|"]
    lines += [f"| {b['bar']} | {b['value']} | {b['target']} | {'yes' if b['met'] else 'NO'} |" for b in report["bars"]]
    return "\n".join(lines)


# The bars of one `--ratios` run: (label, rows, core step, floor step, at most this ratio).
RATIO_CASES = (
    ("2M in memory vs read + one group_by (the 10 core columns)", 2_000_000, "pipeline", "floor", 4.0),
    ("2M in memory vs read + one group_by (all 13 columns)", 2_000_000, "pipeline_eager", "floor_eager", 4.0),
    ("5M in memory vs the quantile floor", 5_000_000, "pipeline", "floor_full", 2.0),
)
SCAN_ROWS = (10_000_000, 40_000_000, 100_000_000)


def ratios(data_dir: Path, reps: int, scan_sizes: list[int]) -> dict[str, Any]:
    """Every bar's ratio in one run: core and floor steps interleaved, `reps` times each, medians compared."""
    loads = [_load()]
    cases = []
    for label, rows, core_step, floor_step, limit in RATIO_CASES:
        path = dataset(rows, data_dir)
        _warm(path)
        times: dict[str, list[float]] = {core_step: [], floor_step: []}
        for rep in range(reps):
            # Alternate which runs first, so neither side always follows the other.
            for step in (core_step, floor_step) if rep % 2 == 0 else (floor_step, core_step):
                result = _subprocess_step(step, path, 0, 1)
                if "error" in result:
                    raise SystemExit(f"{step} at {rows:,} rows failed: {result['error']}")
                times[step].append(result["seconds"])
        core, floor = (float(np.median(times[step])) for step in (core_step, floor_step))
        pairs = [c / f for c, f in zip(times[core_step], times[floor_step], strict=True)]
        cases.append(
            {
                "bar": label,
                "rows": rows,
                "core_step": core_step,
                "floor_step": floor_step,
                "core_seconds": core,
                "floor_seconds": floor,
                "ratio": core / floor,
                "pair_ratios": pairs,
                "limit": limit,
                "met": core / floor <= limit,
                "load_average": _load(),
            }
        )
        loads.append(_load())
    scans = []
    for rows in scan_sizes:
        path = dataset(rows, data_dir)
        _warm(path)
        result = _subprocess_step("core_lazy", path, 0, 1)
        scans.append({"rows": rows, "load_average": _load(), **result})
        loads.append(_load())
    return {
        "machine": (
            f"{platform.python_implementation()} {platform.python_version()}, polars {pl.__version__}, "
            f"numpy {np.__version__}, {os.cpu_count()} CPUs, {platform.machine()}"
        ),
        "reps": reps,
        "cases": cases,
        "scans": scans,
        "bars": _ratio_bars(cases, scans),
        "load_averages": loads,
    }


def _ratio_bars(cases: list[dict[str, Any]], scans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    bars = [
        {"bar": c["bar"], "value": f"{c['ratio']:.2f}x", "target": f"<= {c['limit']:g}x", "met": c["met"]}
        for c in cases
    ]
    timed = {s["rows"]: s for s in scans if "seconds" in s}
    if 10_000_000 in timed and 40_000_000 in timed:
        ratio = timed[40_000_000]["seconds"] / timed[10_000_000]["seconds"]
        bars.append({"bar": "scan: time 40M / time 10M", "value": f"{ratio:.2f}x", "target": "<= 4.4x", "met": ratio <= 4.4})
    if 100_000_000 in timed:
        peak = timed[100_000_000]["peak_rss_bytes"] / GIB
        bars.append({"bar": "scan: peak RSS at 100M", "value": f"{peak:.2f} GiB", "target": "< 8 GiB", "met": peak < 8})
    return bars


def ratios_markdown(report: dict[str, Any]) -> str:
    """The `--ratios` report as Markdown tables."""
    lines = [
        f"### bench_core --ratios: {DAYS} days, {len(SERVICES)} services, median of {report['reps']} interleaved runs",
        "",
        report["machine"] + "; load average (1 / 5 / 15 min) before, between and after the cases: "
        + "; ".join(report["load_averages"]),
        "",
        "| case | rows | core | floor | core s (median) | floor s (median) | ratio | per-run ratios | load average |",
        "|---|---:|---|---|---:|---:|---:|---|---|",
    ]
    for c in report["cases"]:
        pairs = ", ".join(f"{r:.2f}" for r in c["pair_ratios"])
        lines.append(
            f"| {c['bar']} | {c['rows']:,} | {c['core_step']} | {c['floor_step']} | {c['core_seconds']:.3f}"
            f" | {c['floor_seconds']:.3f} | {c['ratio']:.2f}x | {pairs} | {c['load_average']} |"
        )
    if report["scans"]:
        lines += [
            "",
            "| scan rows | extract + calibrate | of which extract | peak RSS | load average |",
            "|---:|---:|---:|---:|---|",
        ]
        for item in report["scans"]:
            if "error" in item:
                lines.append(f"| {item['rows']:,} | error: {item['error']} | | | |")
                continue
            lines.append(
                f"| {item['rows']:,} | {item['seconds']:.2f} s | {item['extract_seconds']:.2f} s"
                f" | {item['peak_rss_bytes'] / GIB:.2f} GiB | {item['load_average']} |"
            )
    lines += ["", "| bar | value | target | met |", "|---|---:|---|---|"]
    lines += [f"| {b['bar']} | {b['value']} | {b['target']} | {'yes' if b['met'] else 'NO'} |" for b in report["bars"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the benchmark (or one step, when called by itself)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="number of outcomes (default 1,000,000)")
    parser.add_argument("--data-dir", type=Path, default=HERE / ".data", help="where the Parquet data is cached")
    parser.add_argument("--per-record-max", type=int, default=1_000_000, help="rows timed for the per-record baseline")
    parser.add_argument("--steps", default=",".join(STEPS), help="comma-separated subset of steps")
    parser.add_argument(
        "--repeat", type=int, default=None, help="runs per step, best time kept (default 3 up to 2M rows, else 1)"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of Markdown")
    parser.add_argument(
        "--scaling",
        action="store_true",
        help="scaling table over 1M, 10M and 40M rows (and --rows when larger): core vs floors over scan_parquet",
    )
    parser.add_argument("--sizes", help="comma-separated row counts for --scaling instead of the default sizes")
    parser.add_argument(
        "--ratios",
        action="store_true",
        help="every bar's ratio in one run: 2M and 5M in memory against their floors, then 10M, 40M, 100M over a scan",
    )
    parser.add_argument("--reps", type=int, default=5, help="interleaved runs per step for --ratios (default 5)")
    parser.add_argument(
        "--scan-sizes",
        default=",".join(str(n) for n in SCAN_ROWS),
        help="row counts timed once over a scan by --ratios (default 10M,40M,100M; empty for none)",
    )
    parser.add_argument("--step", help=argparse.SUPPRESS)
    parser.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--prepare-store", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.prepare_store:
        _prepare_store(args.path)
        return 0
    if args.step:
        print(json.dumps(run_step(args.step, args.path, args.per_record_max, args.repeat or 1)))
        return 0

    if args.ratios:
        scan_sizes = [int(size) for size in args.scan_sizes.split(",") if size.strip()]
        measured = ratios(args.data_dir, args.reps, scan_sizes)
        print(json.dumps(measured, indent=2) if args.json else ratios_markdown(measured))
        return 0

    if args.scaling:
        sizes = [int(size) for size in args.sizes.split(",")] if args.sizes else list(SCALING_ROWS)
        if not args.sizes and args.rows > max(sizes):
            sizes.append(args.rows)
        scaled = scaling(sizes, args.data_dir, args.repeat)
        print(json.dumps(scaled, indent=2) if args.json else scaling_markdown(scaled))
        return 0

    began = time.perf_counter()
    path = dataset(args.rows, args.data_dir)
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    if "store_pipeline" in steps:
        dataset_store(path)
    generated = time.perf_counter() - began
    repeat = args.repeat or (3 if args.rows <= 2_000_000 else 1)
    results = {}
    for step in steps:
        results[step] = _subprocess_step(step, path, args.per_record_max, repeat)
    report = {
        "rows": args.rows,
        "machine": (
            f"{platform.python_implementation()} {platform.python_version()}, polars {pl.__version__}, "
            f"{os.cpu_count()} CPUs, {platform.machine()}, load average {_load()}; data {path.stat().st_size / 2**20:.0f} MiB Parquet"
            f" (prepared in {generated:.1f} s); best of {repeat} run(s) per step, each step in a fresh process"
        ),
        "repeat": repeat,
        "steps": results,
        "bars": _bars(results),
    }
    print(json.dumps(report, indent=2) if args.json else markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
