"""What the calibration assets show beyond numbers: Markdown tables and the reliability diagram.

`calibration_views` adds to a month's `confidence_calibration` metadata the reliability
diagram (a PNG embedded in Markdown, which the Dagster UI renders inline) and the
"where confidence is wrong" table; the per-service tables are for
`confidence_calibration_by_service`. Metadata is advisory: without matplotlib the
diagram is replaced by how to install it, and a window without scored outcomes says so,
so neither ever fails a calibration. `calibration_views` returns Dagster metadata values
(`MetadataValue.md`) and the Markdown builders beside it serve only the calibration
assets' metadata, hence `defs/`.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

import dagster as dg
import polars as pl

from opx_learning.core.calibration import Calibration, InsufficientData
from opx_learning.core.service_calibration import confidence_by_root_cause
from opx_learning.plots import INSTALL_HINT, figure_png, plot_reliability

LISTED = 10
_log = logging.getLogger("opx_learning.calibration_views")


def _fmt(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def _cell(text: str) -> str:
    """A Markdown table cell: pipes escaped, no line breaks."""
    return " ".join(str(text).split()).replace("|", "\\|")


def reliability_diagram_markdown(calibration: Calibration) -> str:
    """The reliability diagram as Markdown with the PNG embedded, or how to get it when matplotlib is missing."""
    try:
        png = figure_png(plot_reliability(calibration), dpi=80)
    except ImportError:
        return f"Reliability diagram not drawn: {INSTALL_HINT}"
    except Exception as error:  # noqa: BLE001 - a picture must never fail the calibration it illustrates
        _log.warning("reliability diagram not drawn: %s: %s", type(error).__name__, error)
        return f"Reliability diagram not drawn: {type(error).__name__}: {error}"
    encoded = base64.b64encode(png).decode("ascii")
    return f"![reliability diagram](data:image/png;base64,{encoded})"


def root_cause_markdown(findings: pl.DataFrame, limit: int = LISTED) -> str:
    """The findings of `confidence_by_root_cause` as Markdown: significant gaps (by q-value, capped), then the causes decided by themselves, once each."""
    significant = findings.filter(pl.col("significant"))
    tested = findings.filter(~pl.col("decided_by_cause")).height
    if significant.is_empty():
        text = (
            f"No (service, root cause) with at least 20 scored outcomes shows a gap between accuracy and mean "
            f"confidence at a 5 % false-discovery rate ({tested} tested)."
        )
    else:
        cells = [
            f"{row['direction']} on root cause **{_cell(row['root_cause'])}** in service **{_cell(row['service'])}** "
            f"| {row['n']} | {_fmt(row['accuracy'])} ({_fmt(row['ci_low'])}–{_fmt(row['ci_high'])}) "
            f"| {_fmt(row['mean_confidence'])} | {_fmt(row['drift'], signed=True)} | {row['q_value']:.2g} | {row['severity']}"
            for row in significant.head(limit).iter_rows(named=True)
        ]
        text = _table(
            "| finding | n | accuracy (Wilson 95 %) | mean confidence | drift | q (FDR) | severity |\n"
            "|---|---:|---:|---:|---:|---:|---|",
            cells,
            significant.height - limit,
            f"of {significant.height} significant among {tested} tested "
            "(`opx.confidence_by_root_cause(outcomes, start, end)` lists all)",
        )
    decided = (
        findings.filter(pl.col("decided_by_cause"))
        .group_by("root_cause")
        .agg(n=pl.col("n").sum(), true_positives=pl.col("true_positives").sum())
        .sort("n", "root_cause", descending=[True, False])
    )
    if decided.is_empty():
        return text
    lines = [
        f"- **{_cell(row['root_cause'])}**: {row['n']} outcomes, "
        + (f"{1 - row['true_positives'] / row['n']:.0%} false positives" if row["true_positives"] * 2 <= row["n"]
           else f"{row['true_positives'] / row['n']:.0%} true positives")
        for row in decided.iter_rows(named=True)
    ]
    return (
        f"{text}\n\n**Causes the platform cannot tell apart at detection time** (the cause decides the label; "
        "not findings):\n" + "\n".join(lines)
    )


def _table(header: str, cells: list[str], more: int, rest: str) -> str:
    """A Markdown table: `header` (with its alignment row), one line per row's cells, and how many more exist."""
    lines = [header, *(f"| {row} |" for row in cells)]
    if more > 0:
        lines.append(f"\n… and {more} more {rest}.")
    return "\n".join(lines)


def calibration_views(calibration: Calibration, outcomes: pl.DataFrame | pl.LazyFrame) -> dict[str, Any]:
    """Extra metadata of one calibration: the reliability diagram and where confidence is wrong.

    Args:
        calibration: the window's calibration.
        outcomes: the outcomes it was computed from.

    Returns:
        `reliability_diagram` (Markdown, PNG embedded) and `where_confidence_is_wrong` (Markdown table)
        plus the count of significant (service, root cause) findings.
    """
    views: dict[str, Any] = {"reliability_diagram": dg.MetadataValue.md(reliability_diagram_markdown(calibration))}
    try:
        findings = confidence_by_root_cause(outcomes, calibration.window_start, calibration.window_end)
    except InsufficientData:
        views["where_confidence_is_wrong"] = dg.MetadataValue.md("No scored outcomes in the window.")
        views["root_cause_findings"] = 0
    except Exception as error:  # noqa: BLE001 - advisory metadata must never fail the calibration
        _log.warning("root cause table not built: %s: %s", type(error).__name__, error)
        views["where_confidence_is_wrong"] = dg.MetadataValue.md(f"Not built: {type(error).__name__}: {error}")
        views["root_cause_findings"] = 0
    else:
        views["where_confidence_is_wrong"] = dg.MetadataValue.md(root_cause_markdown(findings))
        views["root_cause_findings"] = int(findings["significant"].sum())
    return views


def miscalibrated_services_markdown(rows: pl.DataFrame, limit: int = LISTED) -> str:
    """The service bands of `calibrate_by_service` with WARNING or CRITICAL shrunk drift, largest |drift| first."""
    flagged = (
        rows.filter(pl.col("severity") != "INFO")
        .with_columns(size=pl.col("drift").abs())
        .sort("size", "service", "band", descending=[True, False, False])
    )
    if flagged.is_empty():
        return f"Every service is within 0.05 of its confidence in every band ({rows['service'].n_unique()} services)."
    cells = [
        f"{_cell(row['service'])} | {row['band']} | {row['n']} | {_fmt(row['accuracy'])} "
        f"| {_fmt(row['shrunk_accuracy'])} ({_fmt(row['shrunk_ci_low'])}–{_fmt(row['shrunk_ci_high'])}) "
        f"| {_fmt(row['mean_confidence'])} | {_fmt(row['drift'], signed=True)} | {row['severity']}"
        for row in flagged.head(limit).iter_rows(named=True)
    ]
    return _table(
        "| service | band | n | raw accuracy | shrunk accuracy (95 %) | mean confidence | drift | severity |\n"
        "|---|---|---:|---:|---:|---:|---:|---|",
        cells,
        flagged.height - limit,
        "service bands (the stored frame lists all)",
    )


def priors_markdown(priors: pl.DataFrame) -> str:
    """The band priors (global band accuracy, prior strength and how it was fitted) as a Markdown table."""
    lines = ["| band | services | outcomes | band accuracy | prior strength | fit |", "|---|---:|---:|---:|---:|---|"]
    for row in priors.iter_rows(named=True):
        lines.append(
            f"| {row['band']} | {row['services']} | {row['n']} | {_fmt(row['accuracy'])} "
            f"| {row['prior_strength']:.1f} | {row['fit']} |"
        )
    return "\n".join(lines)
