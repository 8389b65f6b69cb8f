"""`opx-learning checklist`: the runbook's morning checklist as of a time, from the audit trail and DAGSTER_HOME."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

import click

from opx_learning.cli.text import printable
from opx_learning.core.windows import WindowError, iso, to_utc


@click.command("checklist")
@click.option("--at", "at_text", default=None,
              help="Evaluation time (date or ISO-8601, UTC; default now). A date means 09:00 that day.")
@click.option("--json", "as_json", is_flag=True, help="Print the items as JSON.")
@click.option("--verbose", is_flag=True, help="Also print Dagster's own log to stderr.")
def checklist(at_text: str | None, as_json: bool, verbose: bool) -> None:
    """Evaluate every item due at --at (daily; Mondays; first Monday of a month); exit 1 if one FAILs.

    Each item is recorded in DAGSTER_HOME as a check evaluation of the partition of the
    period it names, like the 09:00 schedule's run (which also sends the digest alert).
    """
    try:
        at = _parse_at(at_text) if at_text else datetime.now(UTC)
    except WindowError as error:
        raise click.UsageError(str(error)) from None
    from opx_learning.cli.environment import command_settings, use_dagster_home

    settings = command_settings()
    use_dagster_home(settings)
    import dagster as dg

    from opx_learning.app.launch import run_checklist
    from opx_learning.core import checklist as cl

    with dg.DagsterInstance.get() as instance:
        rows = run_checklist(settings, instance, iso(at), verbose)
    if not rows:
        raise click.ClickException("the checklist run failed; run again with --verbose to see Dagster's log")
    tally = {status: sum(row["status"] == status for row in rows) for status in (cl.PASS, cl.WARN, cl.FAIL)}
    if as_json:
        click.echo(json.dumps({"at": iso(at), "lists": cl.due_lists(at), "counts": tally, "items": rows}, indent=2))
    else:
        click.echo(f"Morning checklist as of {iso(at)} ({', '.join(cl.LIST_TITLES[name] for name in cl.due_lists(at))}):")
        for row in rows:
            click.echo(f"  {row['status']:<4}  {row['item']:<38} {row['period']:<24} {printable(row['figure'])}")
        click.echo(f"{tally[cl.FAIL]} FAIL, {tally[cl.WARN]} WARN, {tally[cl.PASS]} PASS")
    if tally[cl.FAIL]:
        sys.exit(1)


def _parse_at(text: str) -> datetime:
    at = to_utc(text, "--at")
    if len(text.strip()) == 10:  # a bare date: that morning's checklist
        at = at.replace(hour=9)
    return at
