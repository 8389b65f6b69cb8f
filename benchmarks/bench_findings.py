"""How many "where confidence is wrong" findings a month: calibrated data (should be ~0) vs the demo's data.

    python benchmarks/bench_findings.py [--months 12] [--per-day 200] [--json]

For each month it generates outcomes (`opx.generate_outcomes`) and counts the significant
findings of `opx.confidence_by_root_cause` (Benjamini-Hochberg at 5 %) in two datasets:

- `calibrated`: the same outcomes with each `true_positive` redrawn as a coin of its own predicted
  confidence, so confidence is calibrated for every cause: every finding is a false discovery;
- `generated`: the generator's data as the demo stores it (noise-like causes are false positives
  by definition; some months overconfident), with the causes decided by themselves counted apart.
"""

from __future__ import annotations

import argparse
import json
import warnings

import numpy as np
import polars as pl


def main() -> None:
    """Print a Markdown table (or JSON) of findings per month."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--per-day", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    import opx_learning as opx

    rng = np.random.default_rng(2026)
    rows = []
    for index in range(args.months):
        year, month = 2026 + index // 12, index % 12 + 1
        start = f"{year}-{month:02d}-01"
        end = f"{year + 1}-01-01" if month == 12 else f"{year}-{month + 1:02d}-01"
        frame = opx.generate_outcomes(start, end, per_day=args.per_day, seed=index)
        confidence = frame["predicted_confidence"].fill_null(0.5).to_numpy()
        truth = rng.random(len(confidence)) < confidence
        calibrated = frame.with_columns(true_positive=pl.Series(truth), false_positive=pl.Series(~truth))
        fair = opx.confidence_by_root_cause(calibrated, start, end)
        real = opx.confidence_by_root_cause(frame, start, end)
        rows.append({
            "month": start[:7],
            "outcomes": frame.height,
            "calibrated_tested": int((~fair["decided_by_cause"]).sum()),
            "calibrated_findings": int(fair["significant"].sum()),
            "generated_tested": int((~real["decided_by_cause"]).sum()),
            "generated_findings": int(real["significant"].sum()),
            "generated_decided_causes": real.filter(pl.col("decided_by_cause"))["root_cause"].n_unique(),
        })
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print("| month | outcomes | calibrated: tested | calibrated: findings | generated: tested | generated: findings "
          "| generated: decided causes |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print("| " + " | ".join(str(value) for value in row.values()) + " |")
    print(f"\nmax findings a month on calibrated data: {max(row['calibrated_findings'] for row in rows)}")


if __name__ == "__main__":
    main()
