"""`opx-learning thresholds {propose|approve|reject|list|current}`: threshold change requests (docs/thresholds.md).

Refusals (authority, four eyes, a decided proposal, the kill switch) exit 1 and name the
audit record of the refusal; unknown ids and bad values exit 2.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from opx_learning.backends import threshold_review_for
from opx_learning.cli.environment import command_settings, principal_name
from opx_learning.cli.safety import StoreError
from opx_learning.cli.text import printable
from opx_learning.config import Settings

_PRINCIPAL_HELP = "Acting principal (default: OPX_PRINCIPAL, else the OS user / AWS caller identity)."


def _emit(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False))


def _review(settings: Settings) -> Any:

    return threshold_review_for(settings)


def _principal(name: str | None, settings: Settings) -> Any:
    """The acting principal: `--principal`, else `OPX_PRINCIPAL`, else the OS user / AWS caller identity."""
    from opx_learning.safety.principals import resolve_principal

    return resolve_principal(principal_name(name), settings=settings)


@contextmanager
def _user_errors(settings: Settings) -> Iterator[None]:
    """Refusals exit 1 naming their audit record; unknown ids and bad values exit 2; no traceback."""
    from opx_learning.safety.models import (
        BackendUnavailable,
        InsufficientAuthority,
        InvalidRequest,
    )
    from opx_learning.safety.thresholds import (
        ApprovalBlocked,
        ProposalNotFound,
        ProposalNotPending,
    )

    store = settings.store_description
    try:
        yield
    except (InsufficientAuthority, ProposalNotPending, ApprovalBlocked) as exc:
        audited = f" (refusal audited as {exc.audit_id})" if exc.audit_id else ""
        raise StoreError(f"{exc}{audited}", store) from None
    except (InvalidRequest, ProposalNotFound, ValueError) as exc:
        raise click.UsageError(str(exc)) from None
    except BackendUnavailable as exc:
        raise StoreError(f"state store unavailable: {exc}", store) from None


def _thresholds_text(thresholds: dict[str, Any]) -> str:
    return ", ".join(f"{k}: {'-' if v is None else f'{v:.4f}'}" for k, v in thresholds.items())


def _show_proposal(proposal: Any, headline: str) -> None:
    click.echo(headline)
    data = proposal.to_dict()
    source = data["source"]
    click.echo(f"  thresholds:  {_thresholds_text(data['thresholds'])}")
    click.echo(f"  calibration: {source.get('calibration_id')} ({source.get('window_start')}..{source.get('window_end')})")
    click.echo(f"  proposer:    {printable(data['proposer'])}   status: {data['status']}")


@click.group("thresholds")
def thresholds() -> None:
    """Confidence-threshold change requests: propose, then another ON_CALL_SRE approves (four eyes)."""


@thresholds.command("propose")
@click.option("--month", default=None, help="Propose the recommended thresholds of this month's calibration (YYYY-MM).")
@click.option("--calibration", "calibration_id", default=None,
              help="Propose those of a stored calibration by id (monthly or custom window; 8+ leading characters).")
@click.option("--principal", default=None, help=_PRINCIPAL_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the proposal as JSON.")
def propose(month: str | None, calibration_id: str | None, principal: str | None, as_json: bool) -> None:
    """Turn a calibration's recommended thresholds into a PENDING proposal (audited); nothing changes yet."""
    from opx_learning.stores.calibrations import calibration_by_id, monthly_calibration

    if (month is None) == (calibration_id is None):
        raise click.UsageError("give exactly one of --month YYYY-MM or --calibration ID")
    settings = command_settings()
    with _user_errors(settings):
        who = _principal(principal, settings)
        calibration, source = (
            monthly_calibration(month, settings) if month is not None
            else calibration_by_id(calibration_id, settings)
        )
        review = _review(settings)
        current = review.current()
        proposal = review.propose(who, calibration, source)
    if as_json:
        _emit(proposal.to_dict())
        return
    _show_proposal(proposal, f"Proposed {proposal.proposal_id} (audit {proposal.proposal_audit_id})")
    if current is not None:
        click.echo(f"  current:     version {current.version}: {_thresholds_text(current.thresholds)}")
    click.echo(f"  next: another ON_CALL_SRE runs `opx-learning thresholds approve {proposal.proposal_id}`")


@thresholds.command("approve")
@click.argument("proposal_id", metavar="ID")
@click.option("--principal", default=None, help=_PRINCIPAL_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the approved proposal and the new current set.")
def approve(proposal_id: str, principal: str | None, as_json: bool) -> None:
    """Approve a PENDING proposal (ON_CALL_SRE / EMERGENCY_OVERRIDE, not its proposer): the next version."""
    settings = command_settings()
    with _user_errors(settings):
        approval = _review(settings).approve(_principal(principal, settings), proposal_id)
    if as_json:
        _emit({"proposal": approval.proposal.to_dict(), "current": approval.current.to_dict(),
               "audit_id": approval.audit_id})
        return
    current = approval.current
    click.echo(f"Approved {proposal_id}: thresholds version {current.version} by {printable(current.approved_by.principal)} "
               f"(audit {approval.audit_id})")
    click.echo(f"  thresholds: {_thresholds_text(current.thresholds)}")


@thresholds.command("reject")
@click.argument("proposal_id", metavar="ID")
@click.option("--reason", required=True, help="Why the proposal is rejected (1..1000 characters, audited).")
@click.option("--principal", default=None, help=_PRINCIPAL_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the rejected proposal.")
def reject(proposal_id: str, reason: str, principal: str | None, as_json: bool) -> None:
    """Reject a PENDING proposal (ON_CALL_SRE / EMERGENCY_OVERRIDE, not its proposer); nothing changes."""
    settings = command_settings()
    with _user_errors(settings):
        proposal = _review(settings).reject(_principal(principal, settings), proposal_id, reason)
    if as_json:
        _emit(proposal.to_dict())
        return
    click.echo(f"Rejected {proposal_id} by {printable(proposal.decided_by.principal)}: {printable(proposal.reason)} "
               f"(audit {proposal.decision_audit_id})")


@thresholds.command("list")
@click.option("--status", default=None, type=click.Choice(["PENDING", "APPROVED", "REJECTED"], case_sensitive=False),
              help="Only proposals with this status.")
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON list of proposals (id, status, proposer, approver, thresholds, version, …).")
def list_proposals(status: str | None, as_json: bool) -> None:
    """List threshold proposals, oldest first, and the current approved version."""
    settings = command_settings()
    with _user_errors(settings):
        review = _review(settings)
        found = [p for p in review.proposals() if status is None or p.status.value == status.upper()]
        current = None if as_json else review.current()
    if as_json:
        _emit([p.to_dict() for p in found])
        return
    if not found:
        click.echo("No threshold proposals.")
    header = ("ID", "STATUS", "PROPOSER", "APPROVER", "VERSION", "THRESHOLDS")
    rows = [(p.proposal_id, p.status.value, printable(p.proposed_by.principal),
             printable(p.approver.principal) if p.approver else "-", str(p.version or "-"), _thresholds_text(p.thresholds))
            for p in found]
    if rows:
        widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header) - 1)]
        for row in (header, *rows):
            click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[-1])
    if current is None:
        click.echo("Current thresholds: none approved yet.")
    else:
        click.echo(f"Current thresholds: version {current.version}, approved by {printable(current.approved_by.principal)} "
                   f"({current.proposal_id}): {_thresholds_text(current.thresholds)}")


@thresholds.command("current")
@click.option("--history", is_flag=True, help="Every approved version, oldest first.")
@click.option("--json", "as_json", is_flag=True, help="Print the current set (or the history) as JSON.")
def current_set(history: bool, as_json: bool) -> None:
    """Show the current approved thresholds (version, approver); exit 1 when none was approved yet."""
    settings = command_settings()
    with _user_errors(settings):
        review = _review(settings)
        sets = review.history() if history else [s for s in [review.current()] if s is not None]
    if as_json:
        _emit([s.to_dict() for s in sets] if history else (sets[0].to_dict() if sets else None))
    else:
        for item in sets:
            click.echo(f"version {item.version}: {_thresholds_text(item.thresholds)} — approved by "
                       f"{printable(item.approved_by.principal)} at {item.approved_at:%Y-%m-%dT%H:%M:%SZ}, proposed by "
                       f"{printable(item.proposed_by.principal)} ({item.proposal_id})")
    if not sets and not history:
        if not as_json:
            click.echo("No thresholds approved yet.")
        raise click.exceptions.Exit(1)
