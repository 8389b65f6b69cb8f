"""`opx-learning demo` and `opx-learning trigger`: run the Dagster assets on the instance of DAGSTER_HOME.

The runs execute in this process on the embedded instance; on an instance whose run
coordinator queues runs they are submitted to the queue and followed (`opx_learning.app`).
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
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import click

from opx_learning.app.instance import DEFAULT_DAGSTER_YAML, dev_command
from opx_learning.app.manual import (
    UNGUARDED,
    ManualPlan,
    begin_manual,
    launch_adopting,
    launch_manual,
    plan_manual,
    refusal_text,
    run_checklist,
    service_report,
)
from opx_learning.app.queue import FOLLOW_TIMEOUT, queues
from opx_learning.backends import guard_for
from opx_learning.cli.environment import (
    command_settings,
    principal_name,
    use_dagster_home,
)
from opx_learning.config import Settings
from opx_learning.core.windows import Window, WindowError, iso, to_utc

if TYPE_CHECKING:
    from opx_learning.safety.guard import Attempt

__all__ = ["DEFAULT_DAGSTER_YAML", "demo", "run_demo", "trigger"]

def _say(as_json: bool, text: str) -> None:
    click.echo(text, err=as_json)


def _timed(as_json: bool, label: str, action: Callable[[], Any]) -> Any:
    _say(as_json, f"-> {label} ...")
    started = time.perf_counter()
    result = action()
    run = result[0] if isinstance(result, tuple) and result else result
    record = result[1] if isinstance(result, tuple) and len(result) > 1 else None
    word = "failed" if getattr(run, "success", True) is False else "done"
    if getattr(getattr(record, "status", None), "value", None) == "RUNNING":
        word = "left running"
    _say(as_json, f"   {word} in {time.perf_counter() - started:.1f} s")
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
@click.option("--launch", type=click.Choice(["in-process", "location"], case_sensitive=False), default=None,
              help="How runs start (default OPX_LAUNCH, else in-process): in-process is fastest; location submits each "
              "run through the code location so it shows on the UI's timeline and job pages and can be re-executed.")
def demo(days: int, per_day: int, end_text: str | None, seed_value: int, as_json: bool, verbose: bool,
         launch: str | None) -> None:
    """Seed, materialize, run the morning checklist and tell the user what to open."""
    try:
        end = to_utc(end_text, "--end") if end_text else datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    except WindowError as error:
        raise click.UsageError(str(error)) from None
    end = end.replace(hour=0, minute=0, second=0, microsecond=0)
    start = end - timedelta(days=days)
    settings = _fit_partitions_start(command_settings(), start, as_json)
    if launch:
        settings = replace(settings, launch=launch.lower())
    started = time.perf_counter()
    dagster_home = use_dagster_home(settings)
    _initialise_demo_home(settings)
    report = run_demo(Window(start, end), per_day, seed_value, as_json, verbose, settings=settings)
    report |= {
        "dagster_home": str(dagster_home),
        "opx_home": str(settings.home),
        "open": {"ui": "opx-learning ui", "command": dev_command(settings, dagster_home), "url": settings.ui_url},
        "seconds": round(time.perf_counter() - started, 1),
        "launch": settings.launch,
    }
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
    else:
        _print_demo(report)
    if any(row["status"] == "FAIL" for row in report["checklist"]):
        sys.exit(1)


def _fit_partitions_start(settings: Settings, start: datetime, as_json: bool) -> Settings:
    """The settings with the partitions start moved back to the first of the data's first month when the data starts earlier.

    OPX_PARTITIONS_START is set as well, for the Dagster definitions this process loads and the
    command printed to open the UI.
    """
    needed = start.date().replace(day=1)
    if needed >= settings.partitions_start:
        return settings
    os.environ["OPX_PARTITIONS_START"] = needed.isoformat()
    _say(as_json, f"note: partitions start {needed.isoformat()} for this demo (OPX_PARTITIONS_START)")
    return replace(settings, partitions_start=needed)


def run_demo(
    window: Window, per_day: int, seed_value: int, as_json: bool, verbose: bool = False, *, settings: Settings | None = None
) -> dict[str, Any]:
    """Seed `window`, materialize every asset over it with as few runs as possible, run the checklist.

    `settings`: the command's settings (default: this process's environment, read now).
    """
    import dagster as dg

    from opx_learning.app import launch
    from opx_learning.app.late import observe_outcome_days
    from opx_learning.core.synthetic import generate_outcomes
    from opx_learning.defs.location import CUSTOM_WINDOWS, partitions_for
    from opx_learning.defs.partitions import (
        custom_key,
        custom_window,
        keys_in_window,
        partition_window,
    )
    from opx_learning.safety.principals import resolve_principal
    from opx_learning.stores.outcomes import outcome_store

    def progress(line: str) -> None:
        _say(as_json, line)

    settings = settings if settings is not None else command_settings()
    _require_kill_switch(settings)
    kill_switch = _kill_switch_note(settings)
    if kill_switch:
        _say(as_json, f"note: {kill_switch}")
    middle = window.start + (window.end - window.start) / 2
    overconfident = f"{middle.year:04d}-{middle.month:02d}"
    frame = generate_outcomes(
        window.start, window.end, per_day=per_day, seed=seed_value, overconfident_months=[overconfident]
    )
    written = _timed(as_json, f"seeding {frame.height} generated outcomes {window.start.date()}..{window.end.date()} "
                     "(ids already stored are kept, not written twice)",
                     lambda: outcome_store(settings).write(frame))
    instance = dg.DagsterInstance.get()
    # Each stored day's data version first, so every computed partition records the version it read.
    _timed(as_json, "observing the outcome store (a data version per day)",
           lambda: observe_outcome_days(settings, instance, observed_by="demo", verbose=verbose))
    guard = guard_for(settings)
    principal = resolve_principal(principal_name(None), settings=settings)
    parts = partitions_for(settings.partitions_start)
    weeks = keys_in_window(parts.weekly, window)
    months = keys_in_window(parts.monthly, window)
    # Daily partitions cover every month the window touches (from the first month's start to the
    # last month's end, an `--end` mid-month included) so monthly snapshots find every day's summaries.
    month_start = window.start.replace(day=1)
    month_end = partition_window(parts.monthly, months[-1]).end if months else window.end
    days = keys_in_window(parts.daily, Window(month_start, max(month_end, window.end)))
    runs: list[launch.RunSummary] = []

    def step(label: str, assets: Sequence[str], keys: Sequence[str], operation: str, cadence: str) -> None:
        if not keys:
            return
        # The demo begins each operation's attempt itself (BACKFILL, its own principal) and its run adopts it.
        partitions_def = parts.cadence.get(cadence)
        span = (
            Window(partition_window(partitions_def, keys[0]).start, partition_window(partitions_def, keys[-1]).end)
            if partitions_def is not None
            else custom_window(keys[0])
        )
        parameters = {"start_date": span.start_iso, "end_date": span.end_iso, "time_window": cadence}
        if operation == "SNAPSHOT":
            parameters["snapshot_type"] = cadence
        attempt = guard.begin(operation, "BACKFILL", principal, parameters, adoptable=True)
        if not attempt.allowed and not attempt.audited:
            # Fail closed, and never name an audit id the audit trail does not hold.
            raise click.ClickException(f"{attempt.skip_reason}: {label} refused and NOT audited (the audit trail "
                                       f"is unavailable); the demo stopped: {attempt.message}")
        if not attempt.allowed:
            _say(as_json, f"-> {label}: {attempt.skip_reason} (audit {attempt.audit_id})")
            skipped = {asset: str(attempt.skip_reason) if asset not in UNGUARDED else "NOT_LAUNCHED" for asset in assets}
            runs.append(launch.RunSummary("", True, list(assets), list(keys), skipped=skipped,
                                          audit_ids=[attempt.audit_id]))
            return
        summary, _ = _timed(as_json, label, lambda: launch_adopting(
            instance, assets, keys, attempt.audit_id, attempt.adoption_token or "", guard=guard, settings=settings,
            trigger_type="BACKFILL", tags={"opx/demo": "true"}, verbose=verbose, progress=progress))
        runs.append(summary)

    # Each step has one guarded operation (the other assets are the unguarded input stage and drift).
    step(f"daily outcomes + pattern summaries ({len(days)} days, one run)",
         ["daily_outcomes", "pattern_summaries_daily"], days, "PATTERN_EXTRACTION", "DAILY")
    step(f"weekly pattern summaries ({len(weeks)} weeks, one run)", ["pattern_summaries_weekly"], weeks,
         "PATTERN_EXTRACTION", "WEEKLY")
    # One run: its calibration step stores every month before its drift step reads a month and the one before.
    step(f"calibration + drift ({len(months)} months, one run)",
         ["confidence_calibration", "drift_metrics", "confidence_calibration_by_service"], months,
         "CALIBRATION", "MONTHLY")
    step(f"daily snapshots ({len(days)} days, one run)", ["learning_snapshots_daily"], days, "SNAPSHOT", "DAILY")
    step(f"weekly snapshots ({len(weeks)} weeks, one run)", ["learning_snapshots_weekly"], weeks, "SNAPSHOT", "WEEKLY")
    step(f"monthly snapshots ({len(months)} months, one run)", ["learning_snapshots_monthly"], months,
         "SNAPSHOT", "MONTHLY")
    custom = custom_key(window)
    instance.add_dynamic_partitions(CUSTOM_WINDOWS, [custom])
    step(f"custom window {custom}: patterns", ["pattern_summaries_custom"], [custom], "PATTERN_EXTRACTION", "CUSTOM")
    step(f"custom window {custom}: calibration", ["confidence_calibration_custom"], [custom], "CALIBRATION", "CUSTOM")
    step(f"custom window {custom}: snapshot", ["learning_snapshot_custom"], [custom], "SNAPSHOT", "CUSTOM")
    checklist_at = iso(window.end + timedelta(hours=9))
    checklist = _timed(as_json, "morning checklist (every asset check)",
                       lambda: run_checklist(settings, instance, checklist_at, verbose, progress))
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
        "outcomes_generated": frame.height,
        "outcomes_written": written,
        "overconfident_month": overconfident,
        "partitions": {"daily": len(days), "weekly": len(weeks), "monthly": len(months), "custom": custom},
        "runs": [run.to_dict() for run in runs],
        "checklist_at": checklist_at,
        "checklist": checklist,
        "drift": drift,
    }


def _print_demo(report: dict[str, Any]) -> None:
    click.echo("")
    already = report["outcomes_generated"] - report["outcomes_written"]
    stored = f" ({already} were already stored)" if already else ""
    click.echo(f"Seeded {report['outcomes_written']} new outcomes{stored} "
               f"({report['window']['start']} .. {report['window']['end']}), "
               f"overconfident month {report['overconfident_month']}.")
    failed = [run for run in report["runs"] if not run["success"]]
    skipped = ", ".join(f"{count} {reason}" for reason, count in sorted(report["skipped"].items()))
    click.echo(f"{len(report['runs'])} runs, {len(failed)} failed" + (f"; steps skipped: {skipped}." if skipped else "."))
    if report["launch"] == "in-process":
        click.echo("Runs ran in this process (the fastest way): the UI lists them under Runs and on each asset, but not "
                   "on the Overview timeline or their job's page; `--launch location` (or OPX_LAUNCH=location) "
                   "submits them through the code location, as the UI does.")
    else:
        click.echo("Runs were submitted through the code location: the Overview timeline and each job's page show them.")
    for run in failed:
        for failure in run["failures"]:
            click.echo(f"  FAILED {failure}")
    if report["kill_switch"]:
        click.echo(f"Note: {report['kill_switch']} Every learning operation was SKIPPED with an audit record "
                   "(`opx-learning audit list --status SKIPPED`); the checklist below shows what was materialized "
                   "before the kill switch was disabled.")
    click.echo(f"\nMorning checklist as of {report['checklist_at']}, the morning after the demo's window. It reads the "
               "audit trail of the 24 h before that morning: the demo's own runs, if started after it, are not counted, "
               "and its BACKFILL runs are not the SCHEDULED runs the runbook's items ask for:")
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
    click.echo(f"\nDone in {report['seconds']} s. Open the Dagster UI on this instance:")
    click.echo(f"  {report['open']['ui']}    (the same as: {report['open']['command']})")
    click.echo(f"  then {report['open']['url']} -> Catalog (each asset's partitions, plots of counts and drift, "
               "and its checks), Jobs, Runs.")
    click.echo(f"Files: {report['opx_home']}/assets (Parquet/JSON per partition), {report['opx_home']}/snapshots, "
               f"{report['opx_home']}/outcomes.")


def _initialise_demo_home(settings: Settings) -> None:
    """The demo initialises its own home on first use; a lost state stays lost (the guard fails closed)."""
    from opx_learning.safety.models import BackendUnavailable
    from opx_learning.safety.state import ensure_initialised

    try:
        created = ensure_initialised(settings)
    except BackendUnavailable as error:
        click.echo(f"note: the safety state could not be initialised ({error})", err=True)
        return
    if created is not None:
        click.echo(f"note: {created.message}", err=True)


def _require_kill_switch(settings: Settings) -> None:
    """Stop the demo before it seeds or runs anything when the kill switch state cannot be read (fail closed, P1)."""
    from opx_learning.safety.chain import StateMismatch
    from opx_learning.safety.models import KillSwitchUnavailable, SkipReason

    guard = guard_for(settings)
    try:
        guard.kill_switch.status()  # a StateMismatch raises its own P1 here
    except (KillSwitchUnavailable, StateMismatch) as error:
        reason = SkipReason.STATE_MISMATCH if isinstance(error, StateMismatch) else SkipReason.KILL_SWITCH_UNAVAILABLE
        if reason is SkipReason.KILL_SWITCH_UNAVAILABLE:
            guard.on_alert("P1", reason.value, {"operation": "SAFETY", "command": "opx-learning demo",
                                                "error": str(error)[:2000]})
        raise click.ClickException(
            f"{reason}: the demo did not run (fail closed): nothing was seeded, run or audited; {error}"
        ) from None


def _kill_switch_note(settings: Settings) -> str | None:
    """A sentence about the kill switch when it blocks work (active or unreadable), else None."""
    from opx_learning.safety.models import BackendUnavailable

    try:
        state = guard_for(settings).kill_switch.status()
    except BackendUnavailable as error:
        return f"the kill switch state cannot be read ({error}); operations are skipped (fail closed)."
    if not state.active:
        return None
    who = state.disabled_by.principal if state.disabled_by else "unknown"
    return f"the kill switch is active (disabled by {who}: {state.reason})."



def _common(command: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--start", required=True, help="Window start: date or ISO-8601 (2026-01-01, 2026-01-01T00:00:00.000Z)."),
        click.option("--end", required=True, help="Window end, exclusive (...T23:59:59.999Z = end of that day)."),
        click.option("--principal", help="Who triggers (default OPX_PRINCIPAL, else the OS user / AWS identity)."),
        click.option("--emergency", is_flag=True, help="Ask to bypass the kill switch (EMERGENCY_OVERRIDE only)."),
        click.option("--json", "as_json", is_flag=True, help="Machine-readable output."),
        click.option("--verbose", is_flag=True, help="Also print Dagster's own log (events, stack traces) to stderr."),
        click.option("--no-wait", "no_wait", is_flag=True,
                     help="On an instance that queues runs: print the run id and audit id once the run is enqueued "
                     "and exit 0 (follow it with `opx-learning audit get`)."),
        click.option("--timeout", type=click.FloatRange(min=1), default=3600, show_default=True,
                     help="On an instance that queues runs: seconds to follow the run before giving up (exit 1; "
                     "the run goes on)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@click.group(help="Run an operation manually over a date range (rate limited, audited, kill-switch checked).")
def trigger() -> None:
    """Manual triggers of the learning operations."""



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
                     service: str | None, cadence: str | None, **follow: Any) -> None:
    """Map the range onto daily / weekly partitions (one run) or one custom window."""
    settings = command_settings()
    plan = _cli_plan(settings, "extract-patterns", start, end, cadence, service)
    _trigger(settings, plan, principal, emergency, as_json, verbose, **follow)


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
                      cadence: str | None, **follow: Any) -> None:
    """Map the range onto monthly partitions (calibration and drift) or one custom window."""
    settings = command_settings()
    _trigger(settings, _cli_plan(settings, "calibrate", start, end, cadence), principal, emergency, as_json, verbose,
             **follow)


@trigger.command("snapshot", help="SNAPSHOT of a range: daily/weekly/monthly partitions, or one custom window.")
@_common
@click.option("--type", "snapshot_type", type=click.Choice(["daily", "weekly", "monthly", "custom"], case_sensitive=False),
              default="custom", show_default=True, help="Snapshot type (any case).")
def snapshot_command(start: str, end: str, principal: str | None, emergency: bool, as_json: bool, verbose: bool,
                     snapshot_type: str, **follow: Any) -> None:
    """Materialize the snapshot partitions of the range (custom: one dynamic partition START..END)."""
    settings = command_settings()
    _trigger(settings, _cli_plan(settings, "snapshot", start, end, snapshot_type), principal, emergency, as_json,
             verbose, **follow)


def _cli_plan(
    settings: Settings, command: str, start: str, end: str, kind: str | None, service: str | None = None
) -> ManualPlan:
    from opx_learning.safety.models import InvalidRequest

    try:
        return plan_manual(command, start, end, kind=kind, service=service, settings=settings)
    except InvalidRequest as error:
        raise click.UsageError(str(error)) from None



def _trigger(settings: Settings, plan: ManualPlan, principal: str | None, emergency: bool, as_json: bool,
             verbose: bool, no_wait: bool = False, timeout: float = FOLLOW_TIMEOUT) -> None:
    import dagster as dg

    from opx_learning.app.leftovers import close_leftovers
    from opx_learning.safety.models import InvalidRequest

    dagster_home = use_dagster_home(settings)
    instance = dg.DagsterInstance.get()
    queued = queues(instance, settings.launch)
    if no_wait and not queued:
        raise click.UsageError(
            f"--no-wait: the instance of DAGSTER_HOME ({dagster_home}) has a "
            f"{type(instance.run_coordinator).__name__}, which does not queue runs: the trigger runs in this process"
        )
    if plan.note:
        _say(as_json, f"note: {plan.note}")
    guard = guard_for(settings)
    for record in close_leftovers(settings, instance, guard):
        _say(as_json, f"note: closed {record.audit_id} FAILED (RUN_TERMINATED): its process is gone (run {record.run_id or 'none'})")
    try:
        attempt = begin_manual(plan.operation, principal_name(principal), plan.parameters, settings=settings,
                               emergency=emergency, guard=guard)
    except InvalidRequest as error:
        raise click.UsageError(str(error)) from None
    if not attempt.allowed:
        _refused(attempt, as_json, settings)
    who = attempt.principal
    where = "submitted through the code location" if queued else "one run"
    summary, record = _timed(as_json, f"{plan.label} ({where})",
                             lambda: launch_manual(plan, attempt.audit_id, attempt.adoption_token or "", verbose=verbose,
                                                   settings=settings, guard=guard, wait=not no_wait, timeout=timeout, instance=instance,
                                                   progress=lambda line: _say(as_json, line)))
    if no_wait:
        _enqueued(attempt.audit_id, summary.run_id, plan, as_json)
        return
    status = record.status.value if record is not None else ("SUCCESS" if summary.success else "FAILED")
    output = {
        "audit_id": attempt.audit_id,
        "status": status,
        "operation_type": plan.operation,
        "trigger_type": "MANUAL",
        "triggered_by": who.to_dict(),
        "window": {"start": plan.window.start_iso, "end": plan.window.end_iso},
        "partitions": plan.partitions(),
        "store": settings.store_description,
        "run": summary.to_dict(),
        "executed": "in a run worker, submitted through the code location (queued while a daemon dequeues)" if queued
        else "in this process",
        "where": {
            "run": f"{settings.ui_url}/runs/{summary.run_id}",
            "dagster": dev_command(settings, dagster_home),
            "assets": str(settings.home / "assets"),
            "audit": f"opx-learning audit get {attempt.audit_id}",
        },
    }
    if plan.note:
        output["note"] = plan.note
    if plan.service:
        output["service"] = service_report(summary, plan.assets[-1], plan.service, settings)
    if as_json:
        click.echo(json.dumps(output, indent=2, default=str))
    else:
        _print_trigger(output, summary)
    if status != "SUCCESS":
        sys.exit(1)


def _enqueued(audit_id: str, run_id: str, plan: ManualPlan, as_json: bool) -> None:
    """Report a run left in the queue (`--no-wait`); the run completes its audit record."""
    output = {
        "audit_id": audit_id,
        "status": "RUNNING",
        "run_id": run_id,
        "operation_type": plan.operation,
        "partitions": plan.partitions(),
        "follow": f"opx-learning audit get {audit_id}",
    }
    if as_json:
        click.echo(json.dumps(output, indent=2))
        return
    click.echo(f"{plan.operation} enqueued  run {run_id}  audit id {audit_id}")
    click.echo(f"  follow: {output['follow']}")


def _refused(attempt: Attempt, as_json: bool, settings: Settings) -> None:
    data = attempt.to_dict()
    data["store"] = settings.store_description
    kill_switch = data["skip_reason"] in ("KILL_SWITCH_ACTIVE", "KILL_SWITCH_UNAVAILABLE", "STATE_MISMATCH")
    if kill_switch and attempt.parameters.get("emergency") and not attempt.emergency:
        data["emergency_denied"] = (
            f"--emergency is granted to EMERGENCY_OVERRIDE principals only; "
            f"{attempt.principal.principal} is {attempt.principal.authority}"
        )
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
        sys.exit(1)
    raise click.ClickException(f"{refusal_text(attempt, data.get('emergency_denied'))}\n  store: {data['store']}")


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
    click.echo(f"  look: {where['run']} (start the UI with `{where['dagster']}`), {where['audit']}, files {where['assets']}, safety store {output['store']}")
