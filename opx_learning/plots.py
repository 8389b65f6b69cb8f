"""Pictures of calibration: the reliability diagram and the monthly drift series.

Plotting needs matplotlib, an optional extra: `pip install "opx_learning[plots]"`. Figures
are built with matplotlib's object API (`matplotlib.figure.Figure`), never pyplot, so no
global state or display backend is involved: show one in a notebook by leaving it as the
cell's value, or save it with `figure.savefig(path)` / `figure_png(figure)`.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import polars as pl

from opx_learning.core.calibration import Calibration, drift_metrics
from opx_learning.core.schema import BAND_NAMES, BANDS, DRIFT_CRITICAL

if TYPE_CHECKING:
    from matplotlib.figure import Figure

INSTALL_HINT = 'plots need matplotlib, an optional extra: pip install "opx_learning[plots]"'
CONFIDENCE_LABEL = "mean predicted confidence"
ACCURACY_LABEL = "accuracy (true-positive rate)"
DRIFT_LABEL = "drift (accuracy − mean confidence)"
MONTH_LABEL = "month (window start, UTC)"
_SEVERITY_COLOURS = {"INFO": "tab:green", "WARNING": "tab:orange", "CRITICAL": "tab:red"}


def _figure(**kwargs: Any) -> Figure:
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(INSTALL_HINT) from error
    return Figure(**kwargs)


def plot_reliability(calibration: Calibration) -> Figure:
    """The reliability diagram of one calibration: accuracy vs mean confidence per band.

    Args:
        calibration: a `Calibration` (from `opx.calibrate` or a stored month).

    Returns:
        A matplotlib Figure with one axes: the bands' accuracy at their mean confidence with
        Wilson 95 % error bars (coloured by severity), the diagonal of perfect calibration, the band
        edges, each band's outcome count, and the ECE in the title. Empty bands are not drawn.

    Raises:
        ImportError: matplotlib is not installed (the message says how to install it).
    """
    figure = _figure(figsize=(6.4, 6.4))
    # Fixed margins (room for the two-line title, band names and labels): drawn once per stored month,
    # constrained layout would be 40 % of the drawing time.
    figure.subplots_adjust(left=0.11, right=0.97, bottom=0.09, top=0.87)
    ax = figure.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect calibration")
    for index, (_, lower, _) in enumerate(BANDS[1:]):
        ax.axvline(lower, color="lightgrey", linewidth=0.8, zorder=0, label="band edges" if index == 0 else None)
    for name, lower, upper in BANDS:
        ax.text((lower + upper) / 2, 1.005, name.replace("_", " "), transform=ax.get_xaxis_transform(),
                ha="center", va="bottom", fontsize=7, color="dimgrey")
    filled = calibration.bands.filter(pl.col("n") > 0)
    for row in filled.iter_rows(named=True):
        accuracy, confidence = row["accuracy"], row["mean_confidence"]
        ax.errorbar(
            [confidence],
            [accuracy],
            # Wilson ends can sit a rounding error inside an accuracy of 0 or 1.
            yerr=[[max(0.0, accuracy - row["ci_low"])], [max(0.0, row["ci_high"] - accuracy)]],
            fmt="o",
            capsize=4,
            color=_SEVERITY_COLOURS.get(row["severity"], "tab:blue"),
            label=f"{row['band']}: accuracy {accuracy:.2f} ({row['severity']})",
        )
        offset = (6, 6) if accuracy < 0.1 else (6, -12)
        ax.annotate(f"n={row['n']}", (confidence, accuracy), xytext=offset, textcoords="offset points", fontsize=8)
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_aspect("equal")
    ax.set_xlabel(CONFIDENCE_LABEL)
    ax.set_ylabel(ACCURACY_LABEL)
    start, end = calibration.window_start.date().isoformat(), calibration.window_end.date().isoformat()
    ax.set_title(
        f"Reliability diagram {start}..{end}\n{calibration.outcome_count} outcomes, ECE {calibration.ece:.3f}, "
        "bars: Wilson 95 %",
        fontsize=10,
        pad=16,
    )
    ax.legend(loc="upper left", fontsize=7)
    return figure


def plot_drift(series: pl.DataFrame | Sequence[Calibration]) -> Figure:
    """The monthly drift series with the ±0.15 advisory lines (docs/design.md#drift-metrics).

    Args:
        series: the `drift_metrics` frame (e.g. `opx.drift_metrics(calibrations)` or the stored
            `drift_metrics` partitions concatenated), or the calibrations themselves.

    Returns:
        A matplotlib Figure with one axes: the headline `drift` (the most drifted sufficient band)
        per window, each band's drift, zero, and dashed lines at +0.15 and −0.15.

    Raises:
        ImportError: matplotlib is not installed.
        ValueError: the series is empty or lacks a column (named in the message).
        TypeError: `series` is neither a frame nor a sequence of calibrations.
    """
    frame = _drift_frame(series)
    figure = _figure(figsize=(9, 4.8), layout="constrained")
    ax = figure.add_subplot()
    starts = frame["window_start"].to_list()
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.axhline(DRIFT_CRITICAL, color="tab:red", linestyle="--", linewidth=1, label=f"±{DRIFT_CRITICAL} (CRITICAL)")
    ax.axhline(-DRIFT_CRITICAL, color="tab:red", linestyle="--", linewidth=1)
    for name in BAND_NAMES:
        values = [float("nan") if v is None else v for v in frame[f"drift_{name}"].to_list()]
        ax.plot(starts, values, marker=".", linewidth=1, alpha=0.6, label=f"drift {name}")
    headline = [float("nan") if v is None else v for v in frame["drift"].to_list()]
    ax.plot(starts, headline, marker="o", color="black", linewidth=2, label="drift (most drifted sufficient band)")
    import matplotlib.dates as mdates

    ax.xaxis.set_major_locator(mdates.MonthLocator(interval=max(1, len(starts) // 12)))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m"))
    ax.set_xlabel(MONTH_LABEL)
    ax.set_ylabel(DRIFT_LABEL)
    ax.set_title("Calibration drift by month (negative = overconfident)", fontsize=10)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    return figure


def _drift_frame(series: pl.DataFrame | Sequence[Calibration]) -> pl.DataFrame:
    if isinstance(series, pl.DataFrame):
        frame = series
    elif isinstance(series, Sequence) and not isinstance(series, str) and all(
        isinstance(item, Calibration) for item in series
    ):
        frame = drift_metrics(series)
    else:
        raise TypeError(
            f"series: expected the drift_metrics frame or a sequence of Calibration, got {type(series).__name__}"
        )
    needed = ["window_start", "drift", *(f"drift_{name}" for name in BAND_NAMES)]
    missing = [name for name in needed if name not in frame.columns]
    if missing:
        raise ValueError(f"series: missing column(s) {', '.join(missing)}; pass the frame of opx.drift_metrics(...)")
    if frame.is_empty():
        raise ValueError("series: no windows to plot (the drift_metrics frame is empty)")
    return frame.sort("window_start")


def figure_png(figure: Figure, dpi: int = 100) -> bytes:
    """The figure rendered as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()

