"""`opx-learning verify`: the integrity sweep of a window, with its P0 alert (docs/integrity.md)."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta

import click

from opx_learning.cli.environment import command_settings
from opx_learning.core.windows import Window, WindowError, to_utc, to_utc_end

EXIT_CLEAN, EXIT_CORRUPTION, EXIT_INCOMPLETE = 0, 1, 3
_MAX_DAYS = 3660
EVERYTHING_FROM = "1970-01-01"
_PROGRESS_EVERY_FROM = 200


def verify_window(start: str | None, end: str | None, days: int | None, now: datetime | None = None) -> Window:
    """The window `verify` sweeps from its options (default: everything stored up to now).

    Raises:
        click.UsageError: unreadable bounds, end <= start, or all three options given.
    """
    from opx_learning.integrity.sweep import DEFAULT_DAYS, default_window

    if start is not None and end is not None and days is not None:
        raise click.UsageError("--days: give --days or both --start and --end, not all three")
    length = timedelta(days=days or DEFAULT_DAYS)
    try:
        if start is None and end is None and days is None:
            whole = default_window(1, now)
            return Window.parse(EVERYTHING_FROM, whole.end)
        if start is None and end is None:
            return default_window(days, now)
        if start is None:
            stop = to_utc_end(end, "end")  # type: ignore[arg-type]
            return Window.parse(stop - length, stop)
        begin = to_utc(start, "start")
        if end is not None:
            return Window.parse(begin, to_utc_end(end, "end"))
        return Window.parse(begin, begin + length) if days is not None else Window.parse(begin, default_window(1, now).end)
    except WindowError as error:
        raise click.UsageError(str(error)) from None


@click.command("verify")
@click.option("--start", default=None, help="Window start (date or ISO-8601); default: --days before the end, else everything stored.")
@click.option("--end", default=None, help="Window end, exclusive (date or ISO-8601); default: now.")
@click.option("--days", type=click.IntRange(1, _MAX_DAYS), default=None,
              help="Window length in days, up to the end (default: everything stored; the daily sweep uses 35).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify(start: str | None, end: str | None, days: int | None, as_json: bool) -> None:
    """Re-read the snapshots, outcome and asset partitions and audit records of a window.

    Also compares the manifest of stored objects with every store, both ways. Exit 0 when
    everything is intact, 1 when something is damaged (one P0 DATA_CORRUPTION alert per
    finding; nothing is changed or deleted), 2 for bad options, 3 when a store could not be
    read at all.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    from opx_learning.backends import backend_for
    from opx_learning.integrity.sweep import run_sweep
    from opx_learning.safety.home import home_problem
    from opx_learning.safety.models import BackendUnavailable

    window = verify_window(start, end, days)
    settings = command_settings()
    click.echo(f"verify: {window.start_iso}..{window.end_iso} on {settings.store_description}", err=True)

    def progress(store: str, done: int, total: int) -> None:
        if done == total or (total >= _PROGRESS_EVERY_FROM and done):
            click.echo(f"verify: {store} {done}/{total}", err=True)

    try:
        report = run_sweep(window, settings, source="verify", progress=progress)
    except (OSError, sqlite3.OperationalError, BotoCoreError, ClientError, BackendUnavailable) as exc:
        if isinstance(exc, OSError) and home_problem(settings, exc) is not None:
            raise  # an unusable home: HOME_UNAVAILABLE from the CLI's entry point, with its P1
        message = f"VERIFY_INCOMPLETE: a store could not be read, no verdict: {type(exc).__name__}: {exc}"
        click.echo(json.dumps({"error": "VERIFY_INCOMPLETE", "message": message}) if as_json else message,
                   err=not as_json)
        raise SystemExit(EXIT_INCOMPLETE) from None
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        for name, location in report.locations.items():
            click.echo(f"{name}: {location}")
        for finding in report.findings:
            click.echo(f"{finding.alarm} {finding}")
        for note in report.notes:
            click.echo(f"note: {note}")
        click.echo(report.summary())
        if report.findings:
            target = backend_for(settings).alert_target
            sent = sum(1 for alert in report.alerts if alert["delivered"])
            state = "raised" if report.alert_delivered else f"raised, {len(report.alerts) - sent} NOT delivered (see the log)"
            alarms = "/".join(sorted({finding.alarm for finding in report.findings}))
            click.echo(f"{len(report.alerts)} P0 {alarms} alert(s), one per finding, {state} to {target} "
                       f"(first dedup id {report.alert_dedup_id}); the damaged items are left untouched as evidence.")
    raise SystemExit(EXIT_CLEAN if report.clean else EXIT_CORRUPTION)
