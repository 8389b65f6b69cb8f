"""Initialising the safety state (docs/safety-state.md): `opx-learning init`, `aws init` and the demo.

The state is created explicitly with an ENABLED kill switch, and a marker is written
beside it (`state.init.json` next to `state.db`, or the `CONFIG#INITIALISED` item of the
config table). From then on a missing, empty or unreadable state is UNAVAILABLE (fail
closed) and creating it again is a re-initialisation: an EMERGENCY_OVERRIDE action with
`force`, audited as KILL_SWITCH_ENABLE (`parameters.action = "REINITIALISE"`); everyone
else is refused with INSUFFICIENT_AUTHORITY, audited where the audit trail is readable.
A damaged database file is never deleted: re-initialising moves it aside.
"""

from __future__ import annotations

import getpass
import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opx_learning.backends import alert_hook_for, backend_for
from opx_learning.config import Settings
from opx_learning.core.windows import iso
from opx_learning.safety.audit import AuditLog, new_record, utcnow
from opx_learning.safety.kill_switch import KillSwitchStore
from opx_learning.safety.models import (
    AlertHook,
    AuditStatus,
    AuthorityType,
    BackendUnavailable,
    InsufficientAuthority,
    KillSwitchState,
    KillSwitchUnavailable,
    OperationType,
    Principal,
    SkipReason,
    TriggerType,
)

_log = logging.getLogger("opx_learning.safety")
INITIALISED = "INITIALISED"
REINITIALISED = "REINITIALISED"
ALREADY_INITIALISED = "ALREADY_INITIALISED"


@dataclass(frozen=True)
class InitResult:
    """What an initialisation did, and in which store."""

    status: str
    message: str
    store: str
    state: KillSwitchState | None
    audit_id: str | None = None
    moved_aside: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON body of `opx-learning init --json`."""
        return {
            "status": self.status,
            "message": self.message,
            "store": self.store,
            "kill_switch": self.state.to_rest() if self.state is not None else None,
            "audit_id": self.audit_id,
            "moved_aside": list(self.moved_aside),
        }


def _stores(settings: Settings, *, create: bool = False) -> tuple[AuditLog, KillSwitchStore]:
    audit, kill_switch, _ = backend_for(settings).safety_stores(create=create)
    return audit, kill_switch


def _who(principal: Principal | None, settings: Settings, name: str | None) -> str:
    if principal is not None:
        return principal.principal
    try:
        from opx_learning.safety.principals import resolve_principal

        return resolve_principal(name, settings=settings).principal
    except Exception:  # noqa: BLE001 - the marker's "by" is informational only
        return getpass.getuser()


def _fresh(settings: Settings, principal: Principal | None, name: str | None = None) -> InitResult | None:
    """Create a never-initialised state; None when someone else created it first."""
    _, kill_switch = _stores(settings, create=True)
    now = utcnow()
    state = KillSwitchState(enabled=True, last_modified=now, version=1)
    if not kill_switch.write(state, 0):
        return None
    kill_switch.mark_initialised(
        {"initialised_at": iso(now), "initialised_by": _who(principal, settings, name),
         "store": settings.store_description}
    )
    return InitResult(
        INITIALISED,
        f"initialised {settings.store_description}: kill switch ENABLED (operations allowed)",
        settings.store_description,
        state,
    )


def _refuse(audit: AuditLog, principal: Principal, force: bool, settings: Settings, on_alert: AlertHook) -> None:
    message = (
        f"{SkipReason.INSUFFICIENT_AUTHORITY}: {settings.store_description} is already initialised; "
        f"re-initialising it resets the kill switch and requires EMERGENCY_OVERRIDE "
        f"({principal.principal} is {principal.authority})"
    )
    record = new_record(
        OperationType.KILL_SWITCH_ENABLE,
        TriggerType.MANUAL,
        principal,
        parameters={"action": "REINITIALISE", "force": force, "store": settings.store_description},
    )
    refused = record.completed(
        AuditStatus.SKIPPED,
        record.start_time,
        {"skip_reason": SkipReason.INSUFFICIENT_AUTHORITY.value, "message": message},
    )
    try:
        audit.append(refused)
    except BackendUnavailable as exc:
        # The audit trail is the lost state itself: the refusal goes to the alert channel instead.
        on_alert("INFO", "KILL_SWITCH_REINITIALISE_REFUSED", {"principal": principal.principal, "message": message,
                                                               "audit_error": str(exc)[:2000]})
        raise InsufficientAuthority(f"{message} (refusal not audited: the audit trail is unavailable)") from None
    raise InsufficientAuthority(message, refused.audit_id)


def _move_aside(path: Path) -> tuple[str, ...]:
    """Rename a damaged database and its WAL files (evidence is never deleted)."""
    stamp = utcnow().strftime("%Y%m%dT%H%M%S%fZ")
    moved = []
    for part in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if part.exists():
            target = part.with_name(f"{part.name}.unavailable-{stamp}")
            part.rename(target)
            moved.append(str(target))
    return tuple(moved)


def _usable_sqlite(path: Path) -> bool:
    """Whether the local database opens with its schema; a locked database is an error, not damage."""
    from opx_learning.safety.sqlite_backend import SqliteState

    try:
        with SqliteState(path).connect():
            return True
    except BackendUnavailable as exc:
        cause = exc.__cause__
        if isinstance(cause, sqlite3.OperationalError) and "locked" in str(cause):
            raise
        return False


def initialise(
    settings: Settings,
    principal: Principal | None = None,
    *,
    force: bool = False,
    on_alert: AlertHook | None = None,
    name: str | None = None,
) -> InitResult:
    """Create the safety state with an ENABLED kill switch, or re-initialise it (`force`, EMERGENCY_OVERRIDE).

    Args:
        settings: backend settings.
        principal: who initialises (needed, and checked, only when the state was initialised before).
        name: without `principal`, the name to resolve when one is needed (the CLI's `--principal`
            or `OPX_PRINCIPAL`; None: the OS user / AWS caller identity).
        force: reset an existing state to ENABLED (moving a damaged database file aside).
        on_alert: alert hook (default: the backend's publisher); a re-initialisation raises an INFO alert.

    Returns:
        INITIALISED (fresh), REINITIALISED (forced) or ALREADY_INITIALISED (existing, readable, not forced).

    Raises:
        InsufficientAuthority: the state exists and the principal is not EMERGENCY_OVERRIDE (audited).
        KillSwitchUnavailable: the state exists but cannot be read and `force` was not given.
        BackendUnavailable: the store cannot be written (for aws: the tables do not exist yet).
    """
    audit, kill_switch = _stores(settings)
    if not kill_switch.initialised():
        created = _fresh(settings, principal, name)
        if created is not None:
            return created
    if principal is None:
        from opx_learning.safety.principals import resolve_principal

        principal = resolve_principal(name, settings=settings)
    on_alert = on_alert or alert_hook_for(settings)
    if principal.authority is not AuthorityType.EMERGENCY_OVERRIDE:
        _refuse(audit, principal, force, settings, on_alert)
    current: KillSwitchState | None
    try:
        current, error = kill_switch.read(), None
    except KillSwitchUnavailable as exc:
        current, error = None, exc
    if not force:
        if current is None:
            raise KillSwitchUnavailable(str(error))
        shown = "ACTIVE (operations blocked)" if current.active else "ENABLED (operations allowed)"
        return InitResult(
            ALREADY_INITIALISED,
            f"{settings.store_description} is already initialised; kill switch unchanged: {shown}. "
            "`opx-learning init --force` resets it to ENABLED (EMERGENCY_OVERRIDE, audited)",
            settings.store_description,
            current,
        )
    moved: tuple[str, ...] = ()
    state_file = backend_for(settings).state_file
    if state_file is not None and not _usable_sqlite(state_file):
        moved = _move_aside(state_file)
    audit, kill_switch = _stores(settings, create=True)
    record = audit.start(
        OperationType.KILL_SWITCH_ENABLE,
        TriggerType.MANUAL,
        principal,
        parameters={"action": "REINITIALISE", "force": True, "store": settings.store_description},
    )
    now = utcnow()
    state = KillSwitchState(enabled=True, last_modified=now, version=(current.version if current else 0) + 1)
    try:
        kill_switch.write(state, None)
        kill_switch.mark_initialised(
            {"initialised_at": iso(now), "initialised_by": principal.principal, "store": settings.store_description,
             "reinitialised": True, "audit_id": record.audit_id}
        )
    except BackendUnavailable as exc:
        audit.complete(record.audit_id, AuditStatus.FAILED, error_message=f"{type(exc).__name__}: {exc}")
        raise
    results = {
        "state": state.to_rest(),
        "previous_state": current.to_rest() if current is not None else None,
        "previous_error": str(error)[:1000] if error is not None else None,
        "moved_aside": list(moved),
    }
    audit.complete(record.audit_id, AuditStatus.SUCCESS, results=results)
    try:
        on_alert("INFO", "KILL_SWITCH_REINITIALISED", {"audit_id": record.audit_id, "principal": principal.principal,
                                                       "store": settings.store_description, "state": state.to_rest()})
    except Exception:  # noqa: BLE001 - alert delivery never undoes the re-initialisation
        _log.exception("INFO alert of re-initialisation %s could not be sent", record.audit_id)
    moved_note = f"; damaged files moved aside: {', '.join(moved)}" if moved else ""
    return InitResult(
        REINITIALISED,
        f"re-initialised {settings.store_description}: kill switch ENABLED (audit {record.audit_id}){moved_note}",
        settings.store_description,
        state,
        record.audit_id,
        moved,
    )


def ensure_initialised(settings: Settings) -> InitResult | None:
    """Initialise a never-initialised state (the demo, `aws init`); leave an existing one alone.

    Returns:
        The INITIALISED result, or None when the state was initialised before (lost or not:
        the guard reports a lost one as KILL_SWITCH_UNAVAILABLE).
    """
    _, kill_switch = _stores(settings)
    if kill_switch.initialised():
        return None
    return _fresh(settings, None)


__all__ = ["ALREADY_INITIALISED", "INITIALISED", "REINITIALISED", "InitResult", "ensure_initialised", "initialise"]
