"""`opx-learning seed` and `summary`: synthetic outcomes in, pattern and calibration summaries out."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import click

from opx_learning.cli.environment import command_settings
from opx_learning.cli.text import printable
from opx_learning.core.windows import Window, WindowError, iso, to_utc, to_utc_end

_SUMMARY_DAYS = 30
# Above this many rows the write shows a progress bar (unless --json).
_PROGRESS_ROWS = 200_000


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {key: _jsonable(inner) for key, inner in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(inner) for inner in value]
    return value


def _emit(data: Any) -> None:
    click.echo(json.dumps(_jsonable(data), indent=2))


def _services(value: str | None) -> int | list[str] | None:
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return int(text)
    names = [name.strip() for name in text.split(",")]
    if not names or any(not name for name in names):
        raise click.UsageError(f"--services: {value!r} must be a count or comma-separated service names")
    return names


@contextmanager
def _store_errors(location: str) -> Iterator[None]:
    """Turn backend failures into click errors naming the store (no traceback).

    A local file error goes on to the CLI's entry point, which names the path and reports an
    unusable home as HOME_UNAVAILABLE.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code == "ResourceNotFoundException":
            raise click.ClickException(
                f"outcome store {location} does not exist; create it with `opx-learning aws init --outcomes-table`"
            ) from None
        raise click.ClickException(f"outcome store {location}: {code or error}") from None
    except BotoCoreError as error:
        raise click.ClickException(f"outcome store {location}: {error}") from None


@click.command(help="Write synthetic outcomes to the active backend's outcome store.")
@click.option("--start", help="First day or instant (ISO-8601). Default: --days before --end.")
@click.option("--end", help="End of the range, exclusive (ISO-8601; ...T23:59:59.999Z = end of that day). Default: today 00:00 UTC.")
@click.option("--days", type=click.IntRange(min=1), help="Length in days when --start or --end is omitted (default 90).")
@click.option("--per-day", type=click.IntRange(min=0), default=400, show_default=True, help="Mean outcomes per day.")
@click.option("--seed", "seed_value", type=int, default=0, show_default=True, help="Random seed (same arguments, same data).")
@click.option("--services", help="Number of services, or comma-separated service names (default 12 services).")
@click.option("--overconfident-month", "overconfident_months", multiple=True, metavar="YYYY-MM",
              help="A month whose true-positive rate falls below the predicted confidence (repeatable).")
@click.option("--drift", type=click.FloatRange(0.0, 1.0), default=0.0, show_default=True,
              help="Overconfidence that grows linearly over the range.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def seed(
    start: str | None,
    end: str | None,
    days: int | None,
    per_day: int,
    seed_value: int,
    services: str | None,
    overconfident_months: tuple[str, ...],
    drift: float,
    as_json: bool,
) -> None:
    """Generate seeded synthetic outcomes and write them to the outcome store."""
    from opx_learning.core.synthetic import generate_outcomes, generation_window
    from opx_learning.stores.outcomes import outcome_store

    try:
        window = generation_window(start, end, days)
        seeded_months = {day.strftime("%Y-%m") for day in window.days()}
        for month in overconfident_months:
            if month.strip() not in seeded_months:
                raise ValueError(
                    f"--overconfident-month: {month!r} is not a YYYY-MM month inside the seeded range "
                    f"[{window.start_iso}, {window.end_iso})"
                )
        frame = generate_outcomes(
            window.start,
            window.end,
            per_day=per_day,
            services=_services(services),
            seed=seed_value,
            overconfident_months=overconfident_months,
            drift=drift,
        )
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    store = outcome_store(command_settings())
    with _store_errors(store.location):
        if as_json or frame.height < _PROGRESS_ROWS:
            written = store.write(frame)
        else:
            day_count = len(window.days())
            with click.progressbar(length=day_count, label="Writing outcomes", file=sys.stderr) as bar:
                written = store.write(frame, progress=lambda done, total: bar.update(done - bar.pos))
    result = {
        "rows_generated": frame.height,
        "rows_written": written,
        "start": window.start_iso,
        "end": window.end_iso,
        "days": len(window.days()),
        "services": frame["service"].n_unique() if frame.height else 0,
        "seed": seed_value,
        "store": store.location,
    }
    if as_json:
        _emit(result)
        return
    click.echo(
        f"Wrote {written} new outcomes ({frame.height} generated, {result['services']} services) "
        f"for [{window.start_iso}, {window.end_iso}) to {store.location}"
    )


def _summary_window(start: str | None, end: str | None, days: int) -> Window:
    length = timedelta(days=days)
    try:
        if start is None and end is None:
            stop = datetime.combine(datetime.now(UTC).date(), time(), tzinfo=UTC)
            return Window(stop - length, stop)
        if start is None:
            stop = to_utc_end(end, "end")  # type: ignore[arg-type]
            return Window(stop - length, stop)
        begin = to_utc(start, "start")
        return Window(begin, to_utc_end(end, "end") if end is not None else begin + length)
    except WindowError as error:
        raise click.UsageError(str(error)) from None


def _minutes(ms: float | None) -> str:
    return "-" if ms is None else f"{ms / 60_000:.1f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _signed(value: float | None) -> str:
    # An empty confidence band has no drift (null in --json).
    return "-" if value is None else f"{value:+.3f}"


def _print_patterns(patterns: Any) -> None:
    header = ("service", "total", "tp", "fp", "fp_rate", "avg_conf", "p50_ttd_min", "p90_ttr_min", "top root cause", "emerging")
    rows = [header]
    for row in patterns.iter_rows(named=True):
        top = printable(row["top_root_causes"][0]["value"].strip()) if row["top_root_causes"] else "-"
        emerging = ", ".join(printable(item["value"].strip()) for item in row["emerging_root_causes"]) or "-"
        rows.append(
            (
                printable(row["service"]) + (" !" if row["detection_warning"] else ""),
                str(row["total_incidents"]),
                str(row["true_positives"]),
                str(row["false_positives"]),
                _ratio(row["fp_rate"]),
                _ratio(row["avg_confidence"]),
                _minutes(row["p50_ttd_ms"]),
                _minutes(row["p90_ttr_ms"]),
                top,
                emerging,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    click.echo("(! = false-positive rate above 30 %, informational)")


def _print_calibration(calibration: Any) -> None:
    click.echo(
        f"Calibration: {calibration.outcome_count} outcomes ({calibration.skipped_count} without confidence), "
        f"ECE {calibration.ece:.3f}, MCE {calibration.mce:.3f}, Brier {calibration.brier:.3f}, "
        f"max |drift| {calibration.max_abs_drift:.3f}" + ("  DRIFT DETECTED" if calibration.drift_detected else "")
    )
    for band in calibration.bands.iter_rows(named=True):
        click.echo(
            f"  {band['band']:<9}  n={band['n']:<7} accuracy={_ratio(band['accuracy'])}  "
            f"mean_conf={_ratio(band['mean_confidence'])}  drift={_signed(band['drift'])}  {band['severity']}"
        )


@click.command(help="Print pattern and calibration summaries of stored outcomes.")
@click.option("--start", help="Window start (ISO-8601). Default: --days before --end.")
@click.option("--end", help="Window end, exclusive (...T23:59:59.999Z = end of that day). Default: today 00:00 UTC.")
@click.option("--days", type=click.IntRange(min=1), default=_SUMMARY_DAYS, show_default=True,
              help="Window length when --start or --end is omitted.")
@click.option("--service", help="Only this service.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def summary(start: str | None, end: str | None, days: int, service: str | None, as_json: bool) -> None:
    """Summarise stored outcomes of a window: per-service patterns and confidence calibration."""
    import polars as pl

    from opx_learning.core.calibration import InsufficientData, calibrate
    from opx_learning.core.emerging import baseline_reach
    from opx_learning.core.patterns import extract_patterns_windows
    from opx_learning.stores.outcomes import outcome_store

    window = _summary_window(start, end, days)
    if service is not None:
        service = service.strip()
        if not service:
            raise click.UsageError("--service: '' is empty")
    store = outcome_store(command_settings())
    calibration = None
    calibration_error = None
    with _store_errors(store.location):
        # The 8 windows of equal length before it hold the emerging root causes' baseline; read
        # lazily, so each computation reads only the columns it needs.
        outcomes = store.scan(baseline_reach(window))
        if service is not None:
            outcomes = outcomes.filter(pl.col("service") == service)
        patterns = extract_patterns_windows(outcomes, [window], service=service)
        try:
            calibration = calibrate(outcomes, window.start, window.end)
        except InsufficientData as error:
            calibration_error = str(error)
        recorded = pl.col("recorded_at")
        in_window = outcomes.filter((recorded >= window.start) & (recorded < window.end)).select(pl.len()).collect()
    if as_json:
        _emit(
            {
                "start": window.start_iso,
                "end": window.end_iso,
                "service": service,
                "store": store.location,
                "outcome_count": in_window.item(),
                "patterns": patterns.to_dicts(),
                "calibration": calibration.to_dict() if calibration is not None else None,
                "calibration_error": calibration_error,
            }
        )
        return
    click.echo(f"Outcomes in [{window.start_iso}, {window.end_iso}) from {store.location}: {in_window.item()}")
    _print_patterns(patterns)
    if calibration is not None:
        _print_calibration(calibration)
    else:
        click.echo(f"Calibration: not computed - {calibration_error}")
