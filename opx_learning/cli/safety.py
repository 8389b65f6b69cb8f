"""`opx-learning init`, `kill-switch`, `audit` and `aws` commands (docs/safety.md, docs/safety-state.md).

Every command that reads or changes the kill switch names the store it used
(`Settings.store_description`), also as `store` in its `--json` output.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from opx_learning.backends import guard_for
from opx_learning.cli.environment import command_settings, principal_name
from opx_learning.cli.text import printable
from opx_learning.config import Settings
from opx_learning.core.windows import iso
from opx_learning.safety.chain import StateMismatch
from opx_learning.safety.models import (
    AuditRecord,
    BackendUnavailable,
    InsufficientAuthority,
    InvalidRequest,
    KillSwitchState,
    KillSwitchUnavailable,
    SkipReason,
)

_PRINCIPAL_HELP = "Acting principal (default: OPX_PRINCIPAL, else the OS user / AWS caller identity)."


def _emit(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False))


class StoreError(click.ClickException):
    """A refusal or an unavailable state, naming the store (`store` also goes into `--json` errors)."""

    def __init__(self, message: str, store: str | None = None) -> None:
        super().__init__(f"{message}\n  store: {store}" if store else message)
        self.detail = message
        self.store = store


@contextmanager
def _user_errors(store: str | None = None) -> Iterator[None]:
    """Turn safety-layer errors into click errors (message, non-zero exit, no traceback), naming the store."""
    try:
        yield
    except InsufficientAuthority as exc:
        audited = f" (refusal audited as {exc.audit_id})" if exc.audit_id else ""
        raise StoreError(f"{exc}{audited}", store) from None
    except InvalidRequest as exc:
        raise click.UsageError(str(exc)) from None
    except StateMismatch as exc:
        raise StoreError(str(exc), store) from None
    except KillSwitchUnavailable as exc:
        raise StoreError(f"{SkipReason.KILL_SWITCH_UNAVAILABLE}: {exc}", store) from None
    except BackendUnavailable as exc:
        raise StoreError(f"state store unavailable: {exc}", store) from None


def _guard(settings: Settings) -> Any:

    return guard_for(settings)


def _principal(name: str | None, settings: Settings) -> Any:
    """The acting principal: `--principal`, else `OPX_PRINCIPAL`, else the OS user / AWS caller identity."""
    from opx_learning.safety.principals import resolve_principal

    return resolve_principal(principal_name(name), settings=settings)


def _show_state(state: KillSwitchState) -> None:
    if state.enabled:
        click.echo("Kill switch: inactive - operations allowed")
    else:
        click.echo("Kill switch: ACTIVE - automated operations blocked")
        by = state.disabled_by
        click.echo(f"  disabled at:   {iso(state.disabled_at) if state.disabled_at else '-'}")
        click.echo(f"  disabled by:   {printable(by.principal)} ({by.authority})" if by else "  disabled by:   -")
        click.echo(f"  reason:        {printable(state.reason or '-')}")
        if state.until:
            click.echo(f"  re-enables at: {iso(state.until)}")
    click.echo(f"  last modified: {iso(state.last_modified) if state.last_modified else '-'}")


@click.group("kill-switch")
def kill_switch() -> None:
    """Show or change the kill switch (changes need EMERGENCY_OVERRIDE and are audited)."""


@kill_switch.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the REST status body.")
def kill_switch_status(as_json: bool) -> None:
    """Show whether operations are blocked (no authority needed)."""
    settings = command_settings()
    store = settings.store_description
    with _user_errors(store):
        state = _guard(settings).kill_switch.status()
    if as_json:
        _emit({**state.to_rest(), "store": store})
    else:
        _show_state(state)
        click.echo(f"  store:         {store}")


@kill_switch.command("disable")
@click.option("--reason", required=True, help="Why operations are blocked (required, audited).")
@click.option("--until", "until", default=None, help="Planned end (ISO-8601 / date); re-enables itself as SYSTEM.")
@click.option("--principal", default=None, help=_PRINCIPAL_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print {status, message, auditId}.")
def kill_switch_disable(reason: str, until: str | None, principal: str | None, as_json: bool) -> None:
    """Activate the kill switch: block scheduled and non-emergency manual operations."""
    settings = command_settings()
    store = settings.store_description
    with _user_errors(store):
        change = _guard(settings).kill_switch.disable(_principal(principal, settings), reason, until=until)
    _show_change(change, store, as_json)


@kill_switch.command("enable")
@click.option("--principal", default=None, help=_PRINCIPAL_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print {status, message, auditId}.")
def kill_switch_enable(principal: str | None, as_json: bool) -> None:
    """Deactivate the kill switch: allow automated operations again."""
    settings = command_settings()
    store = settings.store_description
    with _user_errors(store):
        change = _guard(settings).kill_switch.enable(_principal(principal, settings))
    _show_change(change, store, as_json)


def _show_change(change: Any, store: str, as_json: bool) -> None:
    if as_json:
        _emit({**change.to_rest(), "store": store})
    else:
        click.echo(f"{change.message} (audit {change.audit_id})")
        click.echo(f"  store: {store}")


@click.command("init")
@click.option("--force", is_flag=True, help="Re-initialise an existing state: reset the kill switch to ENABLED "
              "(EMERGENCY_OVERRIDE only, audited; a damaged database is moved aside, never deleted).")
@click.option("--adopt", is_flag=True, help="Accept a STATE_MISMATCH state as it is: re-anchor it to its current "
              "chain head, recreate missing triggers, chain a state that predates chaining (EMERGENCY_OVERRIDE "
              "only, audited).")
@click.option("--principal", default=None, help=_PRINCIPAL_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print {status, message, store, kill_switch, audit_id}.")
def init(force: bool, adopt: bool, principal: str | None, as_json: bool) -> None:
    """Create the safety state (OPX_HOME's state.db, or the aws config item) with the kill switch ENABLED."""
    from opx_learning.safety.state import adopt as adopt_state
    from opx_learning.safety.state import initialise

    if force and adopt:
        raise click.UsageError("--adopt: give --force or --adopt, not both")
    settings = command_settings()
    store = settings.store_description
    with _user_errors(store):
        # A name from OPX_PRINCIPAL is resolved only when needed (a re-initialisation), like the default identity.
        who = _principal(principal, settings) if principal is not None else None
        if adopt:
            result = adopt_state(settings, who, name=principal_name(principal))
        else:
            result = initialise(settings, who, force=force, name=principal_name(principal))
    if as_json:
        _emit(result.to_dict())
    else:
        click.echo(result.message)
        click.echo(f"  store: {store}")


@click.group("audit")
def audit() -> None:
    """Read the append-only audit trail."""


def _detail(record: AuditRecord) -> str:
    if record.error_message:
        return record.error_message.splitlines()[0][:80]
    return str(record.results.get("skip_reason") or "")


def _table(records: list[AuditRecord]) -> None:
    header = ("START", "OPERATION", "TRIGGER", "STATUS", "MS", "BY", "AUDIT ID", "DETAIL")
    rows = [
        (
            iso(r.start_time),
            r.operation_type.value,
            r.trigger_type.value,
            r.status.value,
            "" if r.duration_ms is None else str(r.duration_ms),
            printable(r.triggered_by.principal),
            printable(r.audit_id),
            printable(_detail(r)),
        )
        for r in records
    ]
    widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header) - 1)]
    for row in (header, *rows):
        click.echo("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1])


@audit.command("get")
@click.argument("audit_id")
@click.option("--json", "as_json", is_flag=True, help="Print the record as JSON, with the audit trail's field names.")
def audit_get(audit_id: str, as_json: bool) -> None:
    """Show one audit record by id."""
    with _user_errors():
        record = _guard(command_settings()).audit.get(audit_id)
    if record is None:
        raise click.ClickException(f"audit_id: no audit record {audit_id!r}")
    if as_json:
        _emit(record.to_dict())
        return
    for key, value in record.to_dict().items():
        shown = json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else value
        click.echo(f"{key:15} {'-' if shown is None else printable(shown)}")


@audit.command("list")
@click.option("--operation", default=None, help="PATTERN_EXTRACTION, CALIBRATION, SNAPSHOT, KILL_SWITCH_DISABLE/ENABLE.")
@click.option("--status", default=None, help="RUNNING, SUCCESS, FAILED or SKIPPED.")
@click.option("--since", default=None, help="Records started at or after this instant (date or ISO-8601).")
@click.option("--until", default=None, help="Records started before this instant.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1), help="Most recent N.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list with the audit trail's field names.")
def audit_list(
    operation: str | None, status: str | None, since: str | None, until: str | None, limit: int, as_json: bool
) -> None:
    """List audit records, newest first."""
    with _user_errors():
        # One record past the limit tells whether more match, without counting them all.
        records = _guard(command_settings()).audit.search(
            operation_type=operation, status=status, since=since, until=until, limit=limit + 1
        )
    more = len(records) > limit
    records = records[:limit]
    hint = (
        f"showing the {limit} most recent matching records; more exist: raise --limit or narrow with --since/--until"
    )
    if as_json:
        _emit([record.to_dict() for record in records])
        if more:
            click.echo(hint, err=True)
    elif not records:
        click.echo("No audit records match.")
    else:
        _table(records)
        if more:
            click.echo(hint)


@click.group("aws")
def aws() -> None:
    """Create the AWS resources the aws backend needs."""


def _outcomes_creator() -> Callable[..., Any]:
    try:
        from opx_learning.stores.outcomes import create_table
    except ImportError as exc:
        raise click.ClickException(f"--outcomes-table: outcome store table creation is unavailable ({exc})") from None
    return create_table


_PROTECTION_STEPS = (("deletion_protection", "deletion protection"), ("point_in_time_recovery", "point-in-time recovery"))


@aws.command("init")
@click.option("--outcomes-table", is_flag=True, help="Also create the sandbox opx-outcomes table with its TimeIndex.")
@click.option("--json", "as_json", is_flag=True, help="Print what was done per table (and the kill-switch item) as JSON.")
def aws_init(outcomes_table: bool, as_json: bool) -> None:
    """Create and protect the DynamoDB audit and config tables and the ENABLED kill-switch item (idempotent).

    Deletion protection and point-in-time recovery are turned on for the audit and config
    tables, also when they exist already; the kill-switch item is written only the first time.
    """
    from dataclasses import replace

    from opx_learning.safety.dynamo_backend import dynamo_client, init_tables
    from opx_learning.safety.state import ensure_initialised

    settings = replace(command_settings(), backend="aws")
    client = dynamo_client(settings.region)
    with _user_errors(settings.store_description):
        done = init_tables(settings, client=client)
        item = f"{settings.config_table}/CONFIG#KILL_SWITCH"
        done[item] = {"item": "CREATED" if ensure_initialised(settings) is not None else "EXISTS"}
        if outcomes_table:
            made = _outcomes_creator()(client, settings.outcomes_table)
            done[settings.outcomes_table] = {"table": "CREATED" if made else "EXISTS"}
    if as_json:
        _emit(done)
        return
    for name, steps in done.items():
        shown = [steps.get("table") or steps["item"]]
        for step, label in _PROTECTION_STEPS:
            if step in steps:
                shown.append(f"{label} {'turned on' if steps[step] == 'ENABLED' else 'already on'}")
        click.echo(f"{name}: {', '.join(shown)}")
