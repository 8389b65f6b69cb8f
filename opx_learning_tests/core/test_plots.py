"""Reliability diagram and drift plot: rendered to PNG, axes inspected on the matplotlib Figure."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import polars as pl
import pytest

import opx_learning as opx
from opx_learning import plots
from opx_learning.core.calibration import Calibration, drift_metrics

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def months() -> list[Calibration]:
    frame = opx.generate_outcomes("2025-08-01", "2025-11-01", per_day=60, seed=3, overconfident_months=["2025-10"])
    bounds = [("2025-08-01", "2025-09-01"), ("2025-09-01", "2025-10-01"), ("2025-10-01", "2025-11-01")]
    return [opx.calibrate(frame, start, end) for start, end in bounds]


def _png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_reliability_diagram_axes_bars_diagonal_edges_and_counts(months: list[Calibration]) -> None:
    calibration = months[2]
    figure = opx.plot_reliability(calibration)
    assert _png_size(plots.figure_png(figure, dpi=100)) == (640, 640)
    (ax,) = figure.axes
    assert ax.get_xlabel() == "mean predicted confidence"
    assert ax.get_ylabel() == "accuracy (true-positive rate)"
    filled = calibration.bands.filter(pl.col("n") > 0)
    # One error bar container per non-empty band, at (mean confidence, accuracy), spanning the Wilson interval.
    containers = ax.containers
    assert len(containers) == filled.height
    for container, band in zip(containers, filled.iter_rows(named=True), strict=True):
        x, y = container.lines[0].get_data()
        assert (x[0], y[0]) == (pytest.approx(band["mean_confidence"]), pytest.approx(band["accuracy"]))
        (segments,) = [c.get_segments() for c in container.lines[2]]
        (bottom, top) = segments[0][:, 1]
        assert (bottom, top) == (pytest.approx(band["ci_low"]), pytest.approx(band["ci_high"]))
    lines = {line.get_label(): line for line in ax.get_lines()}
    diagonal = lines["perfect calibration"]
    assert list(diagonal.get_xdata()) == [0, 1] and list(diagonal.get_ydata()) == [0, 1]
    edges = sorted(line.get_xdata()[0] for line in ax.get_lines() if line.get_color() == "lightgrey")
    assert edges == [0.2, 0.4, 0.6, 0.8]
    texts = {text.get_text() for text in ax.texts}
    assert {f"n={n}" for n in filled["n"]} <= texts
    assert {"VERY LOW", "LOW", "MEDIUM", "HIGH", "VERY HIGH"} <= texts
    assert f"ECE {calibration.ece:.3f}" in ax.get_title()


def test_drift_plot_lines_and_critical_limits(months: list[Calibration]) -> None:
    series = drift_metrics(months)
    figure = opx.plot_drift(series)
    width, height = _png_size(plots.figure_png(figure, dpi=100))
    assert (width, height) == (900, 480)
    (ax,) = figure.axes
    assert ax.get_xlabel() == "month (window start, UTC)"
    assert ax.get_ylabel() == "drift (accuracy − mean confidence)"
    horizontal = sorted(line.get_ydata()[0] for line in ax.get_lines() if line.get_linestyle() == "--")
    assert horizontal == [-0.15, 0.15]
    labelled = [line.get_label() for line in ax.get_lines() if not line.get_label().startswith("_")]
    assert labelled == [
        "±0.15 (CRITICAL)",
        "drift VERY_LOW",
        "drift LOW",
        "drift MEDIUM",
        "drift HIGH",
        "drift VERY_HIGH",
        "drift (most drifted sufficient band)",
    ]
    headline = next(line for line in ax.get_lines() if line.get_label().startswith("drift (most"))
    assert list(headline.get_ydata()) == pytest.approx(series["drift"].to_list())
    assert len(headline.get_xdata()) == 3
    # The calibrations themselves give the same picture.
    again = opx.plot_drift(months).axes[0]
    assert list(next(line for line in again.get_lines() if line.get_label().startswith("drift (most")).get_ydata()) == (
        pytest.approx(series["drift"].to_list())
    )


def test_drift_plot_bad_input(months: list[Calibration]) -> None:
    with pytest.raises(ValueError, match="series: missing column.*drift_HIGH"):
        opx.plot_drift(drift_metrics(months).drop("drift_HIGH"))
    with pytest.raises(ValueError, match="series: no windows to plot"):
        opx.plot_drift(drift_metrics(months).head(0))
    with pytest.raises(ValueError, match="series: no windows to plot"):
        opx.plot_drift([])
    with pytest.raises(TypeError, match="series: expected the drift_metrics frame"):
        opx.plot_drift({"drift": 1})  # type: ignore[arg-type]


def test_missing_matplotlib_says_how_to_install(months: list[Calibration], monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry in sys.modules makes `import matplotlib...` raise ImportError, as on a machine without it.
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r'pip install "opx_learning\[plots\]"'):
        opx.plot_reliability(months[0])
    with pytest.raises(ImportError, match=r'pip install "opx_learning\[plots\]"'):
        opx.plot_drift(months)


def test_empty_band_is_not_drawn() -> None:
    frame = opx.generate_outcomes("2025-08-01", "2025-08-08", per_day=20, seed=1)
    confident = frame.with_columns(pl.lit(0.9).alias("predicted_confidence"))
    calibration = opx.calibrate(confident, datetime(2025, 8, 1, tzinfo=UTC), datetime(2025, 8, 8, tzinfo=UTC))
    ax = opx.plot_reliability(calibration).axes[0]
    assert len(ax.containers) == 1


def test_bands_of_one_label_draw_bars_inside_the_unit_square() -> None:
    # 0/25 and 48/48: Wilson's lower end of 0/25 is 1.4e-17, a rounding error above the accuracy 0.
    frame = opx.generate_outcomes("2025-08-01", "2025-08-08", per_day=20, seed=1).head(73)
    labels = [False] * 25 + [True] * 48
    scored = frame.with_columns(
        true_positive=pl.Series(labels), false_positive=pl.Series([not x for x in labels]),
        predicted_confidence=pl.Series([0.1] * 25 + [0.9] * 48),
    )
    calibration = opx.calibrate(scored, "2025-08-01", "2025-08-08")
    assert calibration.bands.filter(pl.col("n") > 0)["ci_low"].to_list()[0] > 0.0
    ax = opx.plot_reliability(calibration).axes[0]
    assert len(ax.containers) == 2
    for container in ax.containers:
        bottom, top = container.lines[2][0].get_segments()[0][:, 1]
        assert 0.0 <= bottom <= top <= 1.0
