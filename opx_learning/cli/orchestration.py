"""`opx-learning demo` and `opx-learning trigger`: run the Dagster assets in-process on DAGSTER_HOME.

DAGSTER_HOME defaults to `$OPX_HOME/dagster_home` (created, with the repository's
local `dagster.yaml`, when missing), so `dagster dev` started with the same two
variables shows every run, materialization and check result. Runs are quiet on the
console (the commands print their own summary; Dagster's events and stack traces stay
in the instance for the UI); `--verbose` prints Dagster's own log as well.

`trigger` maps a range onto partitions:

* `extract-patterns --type daily|weekly|custom`: whole days (default when the range is
  whole days), whole Sunday-to-Sunday weeks, or one summary over the exact window
  (`pattern_summaries_custom`; the default, said in the output, when the range is not
  whole days);
* `calibrate --type monthly|custom`: whole calendar months with their drift metrics
  (default when the range is whole months), else one calibration over the exact window
  (`confidence_calibration_custom`, said in the output);
* `snapshot --type daily|weekly|monthly|custom` (default custom).

Choices accept any case. Inputs are checked before the rate limit is consulted, so a
mistake (bad date, partial partitions, a `--service` without outcomes in the window)
costs no rate-limit slot.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from opx_learning.config import get_settings
from opx_learning.core.windows import Window, WindowError, iso, to_utc

if TYPE_CHECKING:
    from opx_learning.safety.guard import Attempt, Guard

DEFAULT_DAGSTER_YAML = """\
# Local Dagster instance settings (copied into DAGSTER_HOME by `opx-learning demo`).
run_coordinator:
  module: dagster.core.run_coordinator
  class: DefaultRunCoordinator
telemetry:
  enabled: false
"""
_REPO_DAGSTER_YAML = Path(__file__).resolve().parents[2] / "dagster.yaml"
_UI = "http://127.0.0.1:3000"


def ensure_dagster_home() -> Path:
    """Use DAGSTER_HOME, else `$OPX_HOME/dagster_home`; create it with a `dagster.yaml` if missing."""
    raw = os.environ.get("DAGSTER_HOME")
    home = Path(raw).expanduser().absolute() if raw else get_settings().home / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    config = home / "dagster.yaml"
    if not config.exists():
        source = _REPO_DAGSTER_YAML.read_text() if _REPO_DAGSTER_YAML.exists() else DEFAULT_DAGSTER_YAML
        config.write_text(source)
    return home


def dev_command(dagster_home: Path) -> str:
    """The shell command that opens this instance in the Dagster UI."""
    return f"OPX_HOME={get_settings().home} DAGSTER_HOME={dagster_home} dagster dev"


def _say(as_json: bool, text: str) -> None:
    click.echo(text, err=as_json)


def _timed(as_json: bool, label: str, action: Callable[[], Any]) -> Any:
    _say(as_json, f"-> {label} ...")
    started = time.perf_counter()
    result = action()
    _say(as_json, f"   done in {time.perf_counter() - started:.1f} s")
    return result


@click.command(help="Seed synthetic outcomes, materialize every asset for them in DAGSTER_HOME and print the "
               "morning checklist as of 09:00 on the end day (exit 1 if a check FAILs). At least 32 days, so "
               "the previous calendar month, which the checklist's calibration checks read, always has data. "
               "While the kill switch is active the operations are SKIPPED (audited, nothing fails) and the "
               "checklist shows what was materialized before.")
@click.option("--days", type=click.IntRange(min=32, max=700), default=90, show_default=True,
              help="Days of synthetic outcomes, ending the day before --end (32..700).")
@click.option("--per-day", type=click.IntRange(min=1), default=200, show_default=True, help="Mean outcomes per day.")
@click.option("--end", "end_text", help="Exclusive end day of the data (default: today 00:00 UTC).")
@click.option("--seed", "seed_value", type=int, default=0, show_default=True, help="Random seed.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (progress goes to stderr).")
@click.option("--verbose", is_flag=True, help="Also print Dagster's own log (events, stack traces) to stderr.")
def demo(days: int, per_day: int, end_text: str | None, seed_value: int, as_json: bool, verbose: bool) -> None:
    """Seed, materialize, run the morning checklist and tell the user what to open."""
    from opx_learning.defs.partitions import PARTITIONS_START

    try:
        end = to_utc(end_text, "--end") if end_text else datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    except WindowError as error:
        raise click.UsageError(str(error)) from None
    end = end.replace(hour=0, minute=0, second=0, microsecond=0)
    start = end - timedelta(days=days)
    if start < to_utc(PARTITIONS_START):
        raise click.UsageError(f"--days/--end: the data would start {start.date()}, before the partitions ({PARTITIONS_START})")
    started = time.perf_counter()
    dagster_home = ensure_dagster_home()
    report = run_demo(Window(start, end), per_day, seed_value, as_json, verbose)
    report |= {
        "dagster_home": str(dagster_home),
        "opx_home": str(get_settings().home),
        "open": {"command": dev_command(dagster_home), "url": _UI},
        "seconds": round(time.perf_counter() - started, 1),
    }
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
    else:
        _print_demo(report)
    if any(row["status"] == "FAIL" for row in report["checklist"]):
        sys.exit(1)


def run_demo(window: Window, per_day: int, seed_value: int, as_json: bool, verbose: bool = False) -> dict[str, Any]:
    """Seed `window`, materialize every asset over it with as few runs as possible, run the checklist."""
    import dagster as dg

    from opx_learning.core.synthetic import generate_outcomes
    from opx_learning.defs import launch
    from opx_learning.defs.partitions import (
        CUSTOM_WINDOWS,
        custom_key,
        daily_partitions,
        keys_in_window,
        monthly_partitions,
        weekly_partitions,
    )
    from opx_learning.safety.principals import resolve_principal
    from opx_learning.stores.outcomes import outcome_store

    kill_switch = _kill_switch_note()
    if kill_switch:
        _say(as_json, f"note: {kill_switch}")
    middle = window.start + (window.end - window.start) / 2
    overconfident = f"{middle.year:04d}-{middle.month:02d}"
    frame = generate_outcomes(
        window.start, window.end, per_day=per_day, seed=seed_value, overconfident_months=[overconfident]
    )
    written = _timed(as_json, f"seeding {frame.height} outcomes {window.start.date()}..{window.end.date()}",
                     lambda: outcome_store(get_settings()).write(frame))
    instance = dg.DagsterInstance.get()
    tags = {"opx/trigger_type": "BACKFILL", "opx/principal": resolve_principal().principal, "opx/demo": "true"}
    # Daily partitions start at the first month's start so monthly snapshots find every day's summaries.
    month_start = window.start.replace(day=1)
    days = keys_in_window(daily_partitions, Window(month_start, window.end))
    weeks = keys_in_window(weekly_partitions, window)
    months = keys_in_window(monthly_partitions, window)
    runs: list[launch.RunSummary] = []

    def step(label: str, assets: Sequence[str], keys: Sequence[str]) -> None:
        if keys:
            runs.append(_timed(as_json, label, lambda: launch.materialize(instance, assets, keys, tags, verbose)))

    step(f"daily outcomes + pattern summaries ({len(days)} days, one run)",
         ["daily_outcomes", "pattern_summaries_daily"], days)
    step(f"weekly pattern summaries ({len(weeks)} weeks, one run)", ["pattern_summaries_weekly"], weeks)
    for month in months:
        step(f"calibration + drift {month[:7]}", ["confidence_calibration", "drift_metrics"], [month])
    step(f"daily snapshots ({len(days)} days, one run)", ["learning_snapshots_daily"], days)
    step(f"weekly snapshots ({len(weeks)} weeks, one run)", ["learning_snapshots_weekly"], weeks)
    step(f"monthly snapshots ({len(months)} months, one run)", ["learning_snapshots_monthly"], months)
    custom = custom_key(window)
    instance.add_dynamic_partitions(CUSTOM_WINDOWS, [custom])
    step(f"custom window {custom}: patterns, calibration, snapshot (one run)",
         ["pattern_summaries_custom", "confidence_calibration_custom", "learning_snapshot_custom"], [custom])
    checklist = _timed(as_json, "morning checklist (every asset check)",
                       lambda: launch.run_checklist(instance, iso(window.end + timedelta(hours=9)), verbose))
    drift = [
        {"month": month[:7], **{k: v for k, v in meta.items() if k in ("max_abs_drift", "drift", "change_max_abs_drift")}}
        for run in runs
        for month, meta in sorted(run.metadata.get("drift_metrics", {}).items())
    ]
    calibrations = {
        month[:7]: meta for run in runs for month, meta in run.metadata.get("confidence_calibration", {}).items()
    }
    for row in drift:
        row["drift_detected"] = bool(calibrations.get(row["month"], {}).get("drift_detected"))
    skipped: dict[str, int] = {}
    for run in runs:
        for reason in run.skipped.values():
            skipped[reason] = skipped.get(reason, 0) + 1
    return {
        "window": {"start": iso(window.start), "end": iso(window.end)},
        "kill_switch": kill_switch,
        "skipped": skipped,
        "outcomes_written": written,
        "overconfident_month": overconfident,
        "partitions": {"daily": len(days), "weekly": len(weeks), "monthly": len(months), "custom": custom},
        "runs": [run.to_dict() for run in runs],
        "checklist": checklist,
        "drift": drift,
    }


def _print_demo(report: dict[str, Any]) -> None:
    click.echo("")
    click.echo(f"Seeded {report['outcomes_written']} outcomes ({report['window']['start']} .. {report['window']['end']}), "
               f"overconfident month {report['overconfident_month']}.")
    failed = [run for run in report["runs"] if not run["success"]]
    skipped = ", ".join(f"{count} {reason}" for reason, count in sorted(report["skipped"].items()))
    click.echo(f"{len(report['runs'])} runs, {len(failed)} failed" + (f"; steps skipped: {skipped}." if skipped else "."))
    for run in failed:
        for failure in run["failures"]:
            click.echo(f"  FAILED {failure}")
    if report["kill_switch"]:
        click.echo(f"Note: {report['kill_switch']} Every learning operation was SKIPPED with an audit record "
                   "(`opx-learning audit list --status SKIPPED`); the checklist below shows what was materialized "
                   "before the kill switch was disabled.")
    click.echo("\nMorning checklist:")
    for row in sorted(report["checklist"], key=lambda r: (r["asset"], r["check"])):
        click.echo(f"  {row['status']:<4}  {row['asset']:<28} {row['check']:<52} {row['description']}")
    click.echo("\nCalibration drift by month (|drift| > 0.15 is advisory):")
    if not report["drift"]:
        click.echo("  none computed in this demo")
    for row in report["drift"]:
        change = row.get("change_max_abs_drift")
        change_text = f", change {change:+.3f}" if isinstance(change, float) else ""
        flag = "  DRIFT DETECTED" if row["drift_detected"] else ""
        click.echo(f"  {row['month']}  max |drift| {row['max_abs_drift']:.3f}  signed {row['drift']:+.3f}{change_text}{flag}")
    click.echo(f"\nDone in {report['seconds']} s. Open the Dagster UI on this instance (from the repository root):")
    click.echo(f"  {report['open']['command']}")
    click.echo(f"  then {report['open']['url']} -> Assets (partitions, plots of counts and drift), Checks, Runs.")
    click.echo(f"Files: {report['opx_home']}/assets (Parquet/JSON per partition), {report['opx_home']}/snapshots, "
               f"{report['opx_home']}/outcomes.")


def _kill_switch_note() -> str | None:
    """A sentence about the kill switch when it blocks work (active or unreadable), else None."""
    from opx_learning.safety.guard import Guard
    from opx_learning.safety.models import BackendUnavailable

    try:
        state = Guard.from_settings().kill_switch.status()
    except BackendUnavailable as error:
        return f"the kill switch state cannot be read ({error}); operations are skipped (fail closed)."
    if not state.active:
        return None
    who = state.disabled_by.principal if state.disabled_by else "unknown"
    return f"the kill switch is active (disabled by {who}: {state.reason})."


_OPERATIONS = {
    "extract-patterns": "PATTERN_EXTRACTION",
    "calibrate": "CALIBRATION",
    "snapshot": "SNAPSHOT",
}


def _common(command: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--start", required=True, help="Window start: date or ISO-8601 (2026-01-01, 2026-01-01T00:00:00.000Z)."),
        click.option("--end", required=True, help="Window end, exclusive (...T23:59:59.999Z = end of that day)."),
        click.option("--principal", help="Who triggers (default OPX_PRINCIPAL, else the OS user / AWS identity)."),
        click.option("--emergency", is_flag=True, help="Ask to bypass the kill switch (EMERGENCY_OVERRIDE only)."),
        click.option("--json", "as_json", is_flag=True, help="Machine-readable output."),
        click.option("--verbose", is_flag=True, help="Also print Dagster's own log (events, stack traces) to stderr."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@click.group(help="Run an operation manually over a date range (rate limited, audited, kill-switch checked).")
def trigger() -> None:
    """Manual triggers of the learning operations."""


_PATTERN_ASSETS = {
    "DAILY": ["daily_outcomes", "pattern_summaries_daily"],
    "WEEKLY": ["pattern_summaries_weekly"],
    "CUSTOM": ["pattern_summaries_custom"],
}
_CALIBRATION_ASSETS = {
    "MONTHLY": ["confidence_calibration", "drift_metrics"],
    "CUSTOM": ["confidence_calibration_custom"],
}


@trigger.command(
    "extract-patterns",
    help="PATTERN_EXTRACTION over a range, one run: per day (--type daily, the default for a range of whole days), "
    "per Sunday-to-Sunday week (--type weekly), or one summary over the exact window (--type custom, the default "
    "for a range that is not whole days).",
)
@_common
@click.option("--service", help="Report this service's numbers (summaries always cover every service); it must "
              "have outcomes in the window.")
@click.option("--type", "cadence", type=click.Choice(["daily", "weekly", "custom"], case_sensitive=False),
              help="daily, weekly or custom (any case). Default: daily for whole days, else custom.")
def extract_patterns(start: str, end: str, principal: str | None, emergency: bool, as_json: bool, verbose: bool,
                     service: str | None, cadence: str | None) -> None:
    """Map the range onto daily / weekly partitions (one run) or one custom window."""
    window = _window(start, end)
    kind, note = _choose(cadence, window, "DAILY", "days", "extract-patterns")
    extra: dict[str, Any] = {}
    if service is not None:
        service = _check_service(service, window)
        extra["service"] = service
    _trigger("extract-patterns", window, principal, emergency, as_json, kind, _PATTERN_ASSETS[kind], extra,
             service=service, note=note, verbose=verbose)


@trigger.command(
    "calibrate",
    help="CALIBRATION over a range, one run per month: whole calendar months with their drift metrics "
    "(--type monthly, the default for a range of whole months), or one calibration over the exact window "
    "(--type custom, the default otherwise). Fewer than 30 outcomes with a confidence: FAILED, INSUFFICIENT_DATA.",
)
@_common
@click.option("--type", "cadence", type=click.Choice(["monthly", "custom"], case_sensitive=False),
              help="monthly or custom (any case). Default: monthly for whole calendar months, else custom.")
def calibrate_command(start: str, end: str, principal: str | None, emergency: bool, as_json: bool, verbose: bool,
                      cadence: str | None) -> None:
    """Map the range onto monthly partitions (calibration and drift) or one custom window."""
    window = _window(start, end)
    kind, note = _choose(cadence, window, "MONTHLY", "calendar months", "calibrate")
    _trigger("calibrate", window, principal, emergency, as_json, kind, _CALIBRATION_ASSETS[kind], {},
             note=note, verbose=verbose)


@trigger.command("snapshot", help="SNAPSHOT of a range: daily/weekly/monthly partitions, or one custom window.")
@_common
@click.option("--type", "snapshot_type", type=click.Choice(["daily", "weekly", "monthly", "custom"], case_sensitive=False),
              default="custom", show_default=True, help="Snapshot type (any case).")
def snapshot_command(start: str, end: str, principal: str | None, emergency: bool, as_json: bool, verbose: bool,
                     snapshot_type: str) -> None:
    """Materialize the snapshot partitions of the range (custom: one dynamic partition START..END)."""
    kind = snapshot_type.upper()
    asset = "learning_snapshot_custom" if kind == "CUSTOM" else f"learning_snapshots_{kind.lower()}"
    _trigger("snapshot", _window(start, end), principal, emergency, as_json, kind, [asset],
             {"snapshot_type": kind}, verbose=verbose)


def _window(start: str, end: str) -> Window:
    try:
        return Window.parse(start, end)
    except WindowError as error:
        field, _, detail = str(error).partition(": ")
        raise click.UsageError(f"--{field}: {detail}" if field in ("start", "end") else str(error)) from None


def _choose(requested: str | None, window: Window, cadence: str, unit: str, command: str) -> tuple[str, str | None]:
    """The partition type of a trigger: the requested one, else `cadence` when the range fits it, else CUSTOM."""
    from opx_learning.defs.partitions import CADENCE_PARTITIONS, custom_key, whole

    if requested:
        return requested.upper(), None
    if whole(CADENCE_PARTITIONS[cadence], window):
        return cadence, None
    note = (
        f"{window.start_iso}..{window.end_iso} is not whole {unit}: running it as one custom window "
        f"{custom_key(window)} (pass `{command} --type {cadence.lower()}` for {cadence.lower()} partitions)"
    )
    return "CUSTOM", note


def _check_service(service: str, window: Window) -> str:
    """The trimmed `--service`, which must have outcomes in the window (checked before any rate-limit slot)."""
    import polars as pl

    from opx_learning.stores.outcomes import outcome_store

    name = service.strip()
    if not name:
        raise click.UsageError(f"--service: {service!r} is empty; name a service, or leave --service out")
    frame = outcome_store(get_settings()).scan(window).select(pl.col("service").str.strip_chars()).unique().collect()
    services = sorted(value for value in frame["service"].to_list() if value)
    if name not in services:
        shown = f"{window.start_iso}..{window.end_iso}"
        known = f"services with outcomes there: {', '.join(services)}" if services else "no service has outcomes there"
        raise click.UsageError(f"--service: {service!r} has no outcomes in {shown}; {known}")
    return name


def _partition_keys(cadence: str, window: Window) -> list[str]:
    from opx_learning.defs.partitions import (
        CADENCE_PARTITIONS,
        PARTITIONS_START,
        keys_in_window,
        partition_window,
    )

    partitions_def = CADENCE_PARTITIONS[cadence]
    keys = keys_in_window(partitions_def, window)
    unit = {"DAILY": "days", "WEEKLY": "Sunday-to-Sunday weeks", "MONTHLY": "calendar months"}[cadence]
    shown = f"{window.start_iso}..{window.end_iso}"
    if window.start < to_utc(PARTITIONS_START):
        raise click.UsageError(f"--start: {window.start_iso} is before the first partition ({PARTITIONS_START}); "
                               "use --type custom for an earlier window")
    if not keys:
        raise click.UsageError(f"--start/--end: {shown} holds no complete {unit} (a partition exists once its window ended)")
    first, last = partition_window(partitions_def, keys[0]), partition_window(partitions_def, keys[-1])
    if first.start != window.start or last.end != window.end:
        raise click.UsageError(
            f"--start/--end: {shown} does not cover whole, complete {unit} "
            f"(nearest: {first.start_iso}..{last.end_iso}); use --type custom for any window"
        )
    return keys


def _missing_upstream(instance: Any, asset: str, keys: list[str], cadence: str) -> list[str]:
    from opx_learning.defs.partitions import (
        CADENCE_PARTITIONS,
        daily_partitions,
        keys_in_window,
        partition_window,
    )

    if asset not in ("learning_snapshots_daily", "learning_snapshots_weekly", "learning_snapshots_monthly"):
        return []
    import dagster as dg

    upstream = "pattern_summaries_weekly" if cadence == "WEEKLY" else "pattern_summaries_daily"
    needed = keys
    if cadence == "MONTHLY":
        partitions_def = CADENCE_PARTITIONS[cadence]
        window = Window(partition_window(partitions_def, keys[0]).start, partition_window(partitions_def, keys[-1]).end)
        needed = keys_in_window(daily_partitions, window)
    done = instance.get_materialized_partitions(dg.AssetKey(upstream))
    return [key for key in needed if key not in done]


def _trigger(
    command: str,
    window: Window,
    principal_name: str | None,
    emergency: bool,
    as_json: bool,
    cadence: str,
    assets: list[str],
    extra: dict[str, Any],
    service: str | None = None,
    note: str | None = None,
    verbose: bool = False,
) -> None:
    operation = _OPERATIONS[command]
    if cadence == "CUSTOM":
        from opx_learning.defs.partitions import custom_key

        keys = [custom_key(window)]
    else:
        keys = _partition_keys(cadence, window)
    dagster_home = ensure_dagster_home()
    import dagster as dg

    from opx_learning.defs import launch
    from opx_learning.defs.partitions import CUSTOM_WINDOWS
    from opx_learning.resources.safety import (
        AUDIT_ID_TAG,
        PRINCIPAL_TAG,
        TRIGGER_TYPE_TAG,
    )
    from opx_learning.safety.guard import Guard
    from opx_learning.safety.models import AuditTransitionError, InvalidRequest

    instance = dg.DagsterInstance.get()
    missing = _missing_upstream(instance, assets[0], keys, cadence)
    if missing:
        upstream = "extract-patterns --type weekly" if cadence == "WEEKLY" else "extract-patterns"
        raise click.UsageError(
            f"--start/--end: {len(missing)} partitions of pattern summaries are missing (first {missing[0]}); "
            f"run `opx-learning trigger {upstream} --start ... --end ...` first"
        )
    if note:
        _say(as_json, f"note: {note}")
    guard = Guard.from_settings()
    parameters = {"start_date": window.start_iso, "end_date": window.end_iso, "time_window": cadence, **extra}
    try:
        attempt = begin_manual(operation, principal_name, parameters, emergency=emergency, guard=guard)
    except InvalidRequest as error:
        raise click.UsageError(str(error)) from None
    if not attempt.allowed:
        _refused(attempt, as_json)
    principal = attempt.principal
    if cadence == "CUSTOM":
        instance.add_dynamic_partitions(CUSTOM_WINDOWS, [key for key in keys if not instance.has_dynamic_partition(CUSTOM_WINDOWS, key)])
    tags = {AUDIT_ID_TAG: attempt.audit_id, TRIGGER_TYPE_TAG: "MANUAL", PRINCIPAL_TAG: principal.principal}
    label = f"{operation} {cadence}: " + (f"{len(keys)} partitions {keys[0]}..{keys[-1]}" if len(keys) > 1 else f"partition {keys[0]}")
    summary = _timed(as_json, label + " (one run)", lambda: launch.materialize(instance, assets, keys, tags, verbose))
    record = guard.audit.get(attempt.audit_id)
    if record is not None and record.status.value == "RUNNING":
        reason = "; ".join(summary.failures) or "the run ended before the operation started"
        try:
            record = guard.fail(attempt, f"run {summary.run_id} failed: {reason}")
        except AuditTransitionError:  # completed meanwhile by the audit sensor (RUN_TERMINATED)
            record = guard.audit.get(attempt.audit_id)
    status = record.status.value if record is not None else ("SUCCESS" if summary.success else "FAILED")
    settings = get_settings()
    output = {
        "audit_id": attempt.audit_id,
        "status": status,
        "operation_type": operation,
        "trigger_type": "MANUAL",
        "triggered_by": principal.to_dict(),
        "window": {"start": window.start_iso, "end": window.end_iso},
        "partitions": {"type": cadence, "first": keys[0], "last": keys[-1], "count": len(keys)},
        "run": summary.to_dict(),
        "where": {
            "run": f"{_UI}/runs/{summary.run_id}",
            "dagster": dev_command(dagster_home),
            "assets": str(settings.home / "assets"),
            "audit": f"opx-learning audit get {attempt.audit_id}",
        },
    }
    if note:
        output["note"] = note
    if service:
        output["service"] = _service_report(summary, assets[-1], service)
    if as_json:
        click.echo(json.dumps(output, indent=2, default=str))
    else:
        _print_trigger(output, summary)
    if status != "SUCCESS":
        sys.exit(1)


def begin_manual(
    operation: str,
    principal_name: str | None,
    parameters: Mapping[str, Any],
    *,
    emergency: bool = False,
    guard: Guard | None = None,
) -> Attempt:
    """Decide a manual trigger: resolve the principal, then ask the guard for a rate-limited MANUAL attempt.

    Raises:
        InvalidRequest: bad parameters or principals file (the CLI shows it as a usage error).
    """
    from opx_learning.safety.guard import Guard
    from opx_learning.safety.principals import resolve_principal

    principal = resolve_principal(principal_name)
    guard = guard or Guard.from_settings()
    return guard.begin(operation, "MANUAL", principal, parameters, emergency=emergency, rate_limited=True)


def _refused(attempt: Attempt, as_json: bool) -> None:
    data = attempt.to_dict()
    kill_switch = data["skip_reason"] in ("KILL_SWITCH_ACTIVE", "KILL_SWITCH_UNAVAILABLE")
    if kill_switch and attempt.parameters.get("emergency") and not attempt.emergency:
        data["emergency_denied"] = (
            f"--emergency is granted to EMERGENCY_OVERRIDE principals only; "
            f"{attempt.principal.principal} is {attempt.principal.authority}"
        )
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
        sys.exit(1)
    raise click.ClickException(refusal_text(attempt, data.get("emergency_denied")))


def refusal_text(attempt: Attempt, emergency_denied: str | None = None) -> str:
    """One sentence saying why a trigger was refused (with the retry time for a rate limit), then its audit id."""
    reason = str(attempt.skip_reason)
    limit = attempt.rate_limit
    if limit is not None and not limit.allowed:
        at = iso(datetime.now(UTC) + timedelta(seconds=limit.retry_after))
        why = (
            f"{attempt.principal.principal} may start {limit.limit} {attempt.operation_type} per hour; "
            f"retry in {limit.retry_after} s (after {at})"
        )
    else:
        # The guard's message starts with the reason, which the prefix already names.
        why = attempt.message.removeprefix(f"{reason}: ").rstrip(".")
    denied = f" ({emergency_denied})" if emergency_denied else ""
    return f"refused ({reason}): {why}{denied}. Audit id {attempt.audit_id}"


def _service_report(summary: Any, asset: str, service: str) -> dict[str, Any]:
    from opx_learning.resources.io_managers import AssetStorage

    storage = AssetStorage()
    total = fp = 0
    for key in summary.materialized.get(asset, []):
        frame = storage.read(asset, key)
        if frame is None or not hasattr(frame, "filter"):
            continue
        import polars as pl

        rows = frame.filter(pl.col("service") == service)
        total += int(rows["total_incidents"].sum() or 0)
        fp += int(rows["false_positives"].sum() or 0)
    return {"service": service, "total_incidents": total, "false_positives": fp, "fp_rate": fp / total if total else None}


def _print_trigger(output: dict[str, Any], summary: Any) -> None:
    run = output["run"]
    click.echo(f"{output['operation_type']} {output['status']}  audit id {output['audit_id']}")
    partitions = output["partitions"]
    if partitions["count"] == 1:
        shown = f"partition {partitions['first']} ({partitions['type'].lower()})"
    else:
        shown = f"partitions {partitions['first']}..{partitions['last']} ({partitions['count']} {partitions['type'].lower()})"
    click.echo(f"  {shown}, run {run['run_id']}")
    for name, count in run["materialized"].items():
        click.echo(f"  materialized {name}: {count}")
    for name, reason in run["skipped"].items():
        click.echo(f"  skipped {name}: {reason}")
    for failure in run["failures"]:
        click.echo(f"  FAILED {failure}")
    for row in run["checks"]:
        click.echo(f"  check {row['status']:<4} {row['check']}: {row['description']}")
    if "service" in output:
        report = output["service"]
        rate = f"{report['fp_rate']:.1%}" if report["fp_rate"] is not None else "-"
        click.echo(f"  {report['service']}: {report['total_incidents']} incidents, false positives {rate}")
    where = output["where"]
    click.echo(f"  look: {where['run']} (start the UI with `{where['dagster']}`), {where['audit']}, files {where['assets']}")
