"""`opx-learning status` and `opx-learning monitoring deploy` (SPEC §6, §7)."""

from __future__ import annotations

import json
from typing import Any

import click

from opx_learning.config import get_settings


def _emit(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


@click.command("status")
@click.option("--hours", type=click.FloatRange(min=0, min_open=True, max=87_600), default=24.0, show_default=True,
              help="Window of rows 1-4 (counts, error rates, durations, trigger types), in hours (at most 87600, "
              "ten years).")
@click.option("--json", "as_json", is_flag=True, help="Print the six rows as JSON.")
def status(hours: float, as_json: bool) -> None:
    """Show the dashboard's six rows from the audit trail (counts, error rates, durations, triggers, drift, last 20)."""
    from opx_learning.alerts.status import read_status, render
    from opx_learning.safety.audit import utcnow
    from opx_learning.safety.guard import Guard
    from opx_learning.safety.models import BackendUnavailable

    try:
        report = read_status(Guard.from_settings(get_settings()).audit, now=utcnow(), hours=hours)
    except BackendUnavailable as exc:
        raise click.ClickException(f"audit trail unavailable: {exc}") from None
    if as_json:
        _emit(report)
    else:
        click.echo(render(report))


@click.group("monitoring")
def monitoring() -> None:
    """CloudWatch dashboard, alarms and SNS alert topic (aws backend)."""


@monitoring.command("deploy")
@click.option("--json", "as_json", is_flag=True, help="Print what was deployed as JSON.")
def deploy(as_json: bool) -> None:
    """Create or update the dashboard `opx-learning-operations`, its alarms and the alert topics (idempotent)."""
    settings = get_settings()
    if settings.backend != "aws":
        click.echo(
            f"monitoring deploy: OPX_BACKEND is {settings.backend!r}; CloudWatch and SNS need OPX_BACKEND=aws. "
            "Locally, `opx-learning status` shows the same six rows from the audit trail.",
            err=True,
        )
        raise SystemExit(2)
    from botocore.exceptions import BotoCoreError, ClientError

    from opx_learning.alerts.dashboard import deploy as deploy_monitoring

    try:
        report = deploy_monitoring(settings)
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
