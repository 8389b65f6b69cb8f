"""`opx-learning status` and `opx-learning monitoring deploy` (docs/alerts.md)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from opx_learning.backends import guard_for
from opx_learning.cli.environment import command_settings, existing_dagster_home
from opx_learning.cli.text import printable
from opx_learning.config import Settings

if TYPE_CHECKING:
    from opx_learning.safety.audit import AuditLog


def _emit(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


@click.command("status")
@click.option("--hours", type=click.FloatRange(min=0, min_open=True, max=87_600), default=24.0, show_default=True,
              help="Window of rows 1-4 (counts, error rates, durations, trigger types), in hours (at most 87600, "
              "ten years).")
@click.option("--json", "as_json", is_flag=True, help="Print the six rows and the sensors' last ticks as JSON.")
def status(hours: float, as_json: bool) -> None:
    """Show the dashboard's six rows from the audit trail, each sensor's and schedule's last tick, and the partitions late outcomes left pending."""
    from opx_learning.alerts.status import read_status, render
    from opx_learning.safety.audit import utcnow
    from opx_learning.safety.models import BackendUnavailable

    now = utcnow()
    settings = command_settings()
    try:
        audit = guard_for(settings).audit
        report = read_status(audit, now=now, hours=hours)
    except BackendUnavailable as exc:
        raise click.ClickException(f"audit trail unavailable: {exc}") from None
    report["monitors"], report["monitors_source"] = _monitors(now, audit, settings)
    report["late_outcomes_pending"] = _late_pending(settings)
    if as_json:
        _emit(report)
    else:
        click.echo("\n".join(printable(line) for line in render(report).splitlines()))
        click.echo(_render_late(report["late_outcomes_pending"]))


def _monitors(now: datetime, audit: AuditLog, settings: Settings) -> tuple[list[dict[str, Any]], str]:
    """Last tick of every sensor and schedule from the Dagster instance's heartbeats, and where they were read."""
    home = existing_dagster_home(settings)
    if home is None:
        return [], "no Dagster instance (set DAGSTER_HOME to the instance the daemon uses)"
    import dagster as dg

    from opx_learning.app.leftovers import close_leftovers
    from opx_learning.defs.monitors import monitors_report

    instance = dg.DagsterInstance.from_config(str(home))
    try:
        for record in close_leftovers(settings, instance, guard_for(settings)):
            click.echo(f"note: closed {record.audit_id} FAILED (RUN_TERMINATED): its process is gone", err=True)
        return monitors_report(now, settings=settings, instance=instance, audit=audit), f"Dagster instance {home}"
    finally:
        instance.dispose()


def _late_pending(settings: Settings) -> list[dict[str, Any]]:
    """The computed partitions late outcomes left pending, from the Dagster instance (none without one)."""
    home = existing_dagster_home(settings)
    if home is None:
        return []
    import dagster as dg

    from opx_learning.app.late import pending_partitions

    instance = dg.DagsterInstance.from_config(str(home))
    try:
        return [pending.to_dict() for pending in pending_partitions(settings, instance)]
    finally:
        instance.dispose()


def _render_late(pending: list[dict[str, Any]]) -> str:
    if not pending:
        return "Late outcomes pending: none (every computed partition reflects the stored outcomes)"
    lines = [f"Late outcomes pending: {len(pending)} partition(s) (refreshed by late_outcomes_automation once started)"]
    lines += [f"  {p['asset']:<36} {p['partition']:<12} since {p['since'] or '-':<26} {p['reason']}" for p in pending]
    return "\n".join(lines)


@click.group("monitoring")
def monitoring() -> None:
    """CloudWatch dashboard, alarms and SNS alert topic (aws backend)."""


@monitoring.command("deploy")
@click.option("--json", "as_json", is_flag=True, help="Print what was deployed as JSON.")
def deploy(as_json: bool) -> None:
    """Create or update the dashboard `opx-learning-operations`, its alarms and the alert topics (idempotent)."""
    from opx_learning.backends import backend_for

    settings = command_settings()
    if not backend_for(settings).cloud_monitoring:
        click.echo(
            f"monitoring deploy: OPX_BACKEND is {settings.backend!r}; CloudWatch and SNS need OPX_BACKEND=aws. "
            "Locally, `opx-learning status` shows the same six rows from the audit trail.",
            err=True,
        )
        raise SystemExit(2)
    from botocore.exceptions import BotoCoreError, ClientError

    from opx_learning.alerts.dashboard import deploy as deploy_monitoring
    from opx_learning.defs.monitors import watched_sensor_names

    try:
        report = deploy_monitoring(settings, watched_sensor_names(settings))
    except (BotoCoreError, ClientError) as exc:
        raise click.ClickException(f"monitoring deploy failed: {exc}") from None
    if as_json:
        _emit(report)
        return
    click.echo(f"Dashboard {report['dashboard']} ({report['region']}, namespace {report['namespace']}):")
    for number, row in enumerate(report["rows"], start=1):
        click.echo(f"  row {number}: {'; '.join(row)}")
    click.echo(f"Alarms ({len(report['alarms'])}):")
    for alarm in report["alarms"]:
        click.echo(f"  {alarm['name']}: {alarm['description']}")
    click.echo(f"Alert topic (FIFO): {report['alert_topic_arn']}")
    click.echo(f"Alarm topic: {report['alarm_topic_arn']}")
    click.echo(f"Operations log group: {report['log_group']}")
