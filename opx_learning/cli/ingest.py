"""`opx-learning ingest`: load outcome exports into the active backend's outcome store."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

# From this many rows the write shows a progress bar on stderr (unless --json).
PROGRESS_ROWS = 20_000


class InputError(click.ClickException):
    """A file cannot be ingested at all (exit 2, like every user mistake)."""

    exit_code = 2


class _Bar:
    """A click progress bar on stderr, opened on the first report of a large enough write."""

    def __init__(self) -> None:
        self.bar: Any = None

    def __call__(self, done: int, total: int) -> None:
        if total < PROGRESS_ROWS:
            return
        if self.bar is None:
            self.bar = click.progressbar(length=total, label="Writing outcomes", file=sys.stderr)
            self.bar.__enter__()
        self.bar.update(done - self.bar.pos)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


@click.command(help="Validate outcome exports (JSON lines, JSON arrays, Parquet, CSV; canonical or camelCase) and "
               "write their new valid rows to the active backend's outcome store by day.")
@click.argument("paths", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=str))
@click.option("--dry-run", is_flag=True, help="Validate and count against the store; write nothing.")
@click.option("--rejected-dir", type=click.Path(file_okay=False, path_type=str),
              help="Directory for rejected.jsonl, conflicts.jsonl and report.json (default: $OPX_HOME/ingest/<UTC timestamp>).")
@click.option("--principal", default=None,
              help="Acting principal (default: OPX_PRINCIPAL, else the OS user / AWS caller identity).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable summary.")
def ingest(paths: tuple[str, ...], dry_run: bool, rejected_dir: str | None, principal: str | None, as_json: bool) -> None:
    """Ingest outcome files; rejected rows and conflicts go to a report, already stored ids count as duplicates."""
    from opx_learning.cli.data import _store_errors
    from opx_learning.cli.environment import (
        command_settings,
        existing_dagster_home,
        principal_name,
    )
    from opx_learning.ingestion import IngestError
    from opx_learning.ingestion import ingest as run_ingest
    from opx_learning.safety.principals import resolve_principal
    from opx_learning.stores.outcomes import outcome_store

    settings = command_settings()
    who = resolve_principal(principal_name(principal), settings=settings).principal
    store = outcome_store(settings)
    bar = _Bar()
    try:
        with _store_errors(store.location):
            report = run_ingest(
                list(paths),
                dry_run=dry_run,
                rejected_dir=rejected_dir,
                principal=who,
                store=store,
                settings=settings,
                progress=None if as_json else bar,
                dagster_home=existing_dagster_home(settings),
            )
    except IngestError as error:
        raise InputError(str(error)) from None
    finally:
        bar.close()
    result = report.to_dict()
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    _print(result)


def _print(result: dict[str, Any]) -> None:
    files = len(result["files"])
    click.echo(
        f"Read {result['read']} rows from {files} file{'s' if files != 1 else ''}: "
        f"{result['written']} new, {result['duplicates']} duplicate, {result['conflicts']} conflicting, "
        f"{result['rejected']} rejected."
    )
    verb = "Would write" if result["dry_run"] else "Wrote"
    days = result["days"]
    click.echo(f"{verb} {result['written']} new outcomes to {result['store']}" + (":" if days else "."))
    for day, count in days.items():
        click.echo(f"  {day}  {count}")
    if result["conflicts"]:
        click.echo(
            f"Conflicting {result['conflicts']} rows: their outcome_id is already stored with different content; "
            "not written."
        )
    if result["rejected"]:
        reasons = ", ".join(f"{name} {count}" for name, count in result["rejected_by_reason"].items())
        click.echo(f"Rejected {result['rejected']} rows ({reasons}).")
    if result["report_dir"]:
        click.echo(f"Rejected rows: {result['rejected_file']}")
        if result["conflicts"]:
            click.echo(f"Conflicts (stored and incoming versions): {result['conflicts_file']}")
        click.echo(f"Report: {result['report_file']}")
    for note in result["warnings"]:
        click.echo(f"Note: {note}")
    early = result["before_partitions_start"]
    if early:
        click.echo(
            f"Warning: {early['rows']} rows land before OPX_PARTITIONS_START {early['partitions_start']} "
            f"(first day {early['first_day']}); no partition covers them, so they cannot be backfilled "
            f"until OPX_PARTITIONS_START is set to {early['first_day']} or earlier.",
            err=True,
        )
    stale = result["stale"]
    if stale and stale["partitions"]:
        state = "would be" if result["dry_run"] else "are now"
        click.echo(f"Partitions already materialized in {stale['dagster_home']} that {state} stale:")
        for asset, keys in stale["partitions"].items():
            click.echo(f"  {asset}: {', '.join(keys)}")
        if stale.get("observed"):
            click.echo(f"New data versions observed for {len(stale['observed'])} day(s): Dagster shows them unsynced; "
                       "late_outcomes_automation refreshes them once started.")
        click.echo("Re-run them with:")
        for command in stale["commands"]:
            click.echo(f"  {command}")
    if result["dry_run"]:
        click.echo("Dry run: nothing was written.")
