"""`opx-learning snapshot {list|show|diff}`: read the append-only snapshot store (docs/snapshots.md)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from opx_learning.cli.environment import command_settings
from opx_learning.cli.text import printable
from opx_learning.core.snapshots import Snapshot
from opx_learning.core.windows import iso


def _store() -> Any:
    from opx_learning.stores.snapshots import snapshot_store

    return snapshot_store(command_settings())


@contextmanager
def _user_errors() -> Iterator[None]:
    """Unknown or malformed references exit 2 with their message; an integrity failure exits 1."""
    from opx_learning.integrity.findings import IntegrityError
    from opx_learning.stores.snapshot_refs import SnapshotNotFound

    try:
        yield
    except IntegrityError as exc:
        raise click.ClickException(f"DATA_CORRUPTION: {exc}") from None
    except (ValueError, SnapshotNotFound) as exc:
        raise click.UsageError(str(exc.args[0]) if exc.args else str(exc)) from None


def _emit(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False))


def _headline(snapshot: Snapshot) -> dict[str, Any]:
    data = snapshot.to_dict()
    return {key: data[key] for key in ("snapshot_id", "snapshot_type", "window_start", "window_end", "version",
                                       "content_hash", "created_at", "counts", "services")}


@click.group("snapshot")
def snapshot() -> None:
    """List, show and compare stored snapshots (append-only, every version kept)."""


@snapshot.command("list")
@click.option("--type", "snapshot_type", default=None, help="DAILY, WEEKLY, MONTHLY or CUSTOM.")
@click.option("--since", default=None, help="Windows starting at or after this instant (date or ISO-8601).")
@click.option("--until", default=None, help="Windows starting before this instant.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list (id, type, window, version, counts, services).")
def snapshot_list(snapshot_type: str | None, since: str | None, until: str | None, as_json: bool) -> None:
    """List stored snapshots, oldest window first, every version."""
    from opx_learning.stores.snapshot_refs import read, select

    store = _store()
    with _user_errors():
        found = [read(store, entry) for entry in select(store, snapshot_type, since, until)]
    if as_json:
        _emit([_headline(s) for s in found])
        return
    if not found:
        click.echo(f"No snapshots match in {store.location}.")
        return
    header = ("TYPE", "WINDOW START", "WINDOW END", "V", "OUTCOMES", "SERVICES", "SNAPSHOT ID")
    rows = [
        (s.snapshot_type, iso(s.window_start), iso(s.window_end), str(s.version),
         str(s.counts.get("outcomes", 0)), str(len(s.services)), s.snapshot_id)
        for s in found
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


@snapshot.command("show")
@click.argument("reference", metavar="ID")
@click.option("--version", "version", type=click.IntRange(min=1), default=None,
              help="Another stored version of the same window.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole snapshot (its stored JSON form).")
def snapshot_show(reference: str, version: int | None, as_json: bool) -> None:
    """Show one stored snapshot; ID is a snapshot id (or 8+ leading hex digits) or TYPE:START..END, optionally @vN."""
    from opx_learning.stores.snapshot_refs import resolve

    with _user_errors():
        found = resolve(_store(), reference, version)
    if as_json:
        _emit(found.to_dict())
        return
    head = _headline(found)
    for key in ("snapshot_id", "snapshot_type", "window_start", "window_end", "version", "content_hash", "created_at"):
        click.echo(f"{key:14} {head[key]}")
    click.echo(f"{'counts':14} " + ", ".join(f"{k} {v}" for k, v in found.counts.items()))
    click.echo(f"{'services':14} {printable(', '.join(found.services)) or '-'}")
    for summary in found.summaries:
        causes = ", ".join(f"{printable(c['value'])} ({c['count']})" for c in (summary.get("top_root_causes") or [])[:3])
        fp_rate = summary.get("fp_rate")
        click.echo(
            f"  {summary['window_start']}  {printable(summary['service']):<22} incidents {summary.get('total_incidents', 0):>5}"
            f"  fp rate {'-' if fp_rate is None else f'{fp_rate:.3f}'}  top: {causes or '-'}"
        )
    calibration = found.calibration
    if calibration is None:
        click.echo("calibration    -")
        return
    click.echo(f"calibration    {calibration['calibration_id']} ({calibration['window_start']}.."
               f"{calibration['window_end']}), ece {calibration.get('ece')}")
    for band in calibration.get("bands") or []:
        click.echo(f"  {band['band']:<10} n {band.get('n'):>5}  accuracy {_three(band.get('accuracy'))}"
                   f"  mean confidence {_three(band.get('mean_confidence'))}")
    thresholds = calibration.get("recommended_thresholds") or {}
    click.echo("  recommended thresholds: " + ", ".join(f"{k}: {v}" for k, v in thresholds.items()))


@snapshot.command("diff")
@click.argument("first", metavar="A")
@click.argument("second", metavar="B")
@click.option("--json", "as_json", is_flag=True, help="Print the whole diff as JSON.")
def snapshot_diff(first: str, second: str, as_json: bool) -> None:
    """What changed from snapshot A to B: root causes, per-service counts and fp rates, bands, thresholds.

    A and B are each a snapshot id (or 8+ leading hex digits) or TYPE:START..END, optionally @vN.
    """
    from opx_learning.core.snapshot_diff import diff_markdown, diff_snapshots
    from opx_learning.stores.snapshot_refs import resolve

    store = _store()
    with _user_errors():
        before, after = resolve(store, first), resolve(store, second)
    diff = diff_snapshots(before, after)
    if as_json:
        _emit(diff)
    else:
        click.echo(diff_markdown(diff))


def _three(value: float | None) -> str:
    # An empty confidence band has no accuracy or mean confidence.
    return "-" if value is None else f"{value:.3f}"
