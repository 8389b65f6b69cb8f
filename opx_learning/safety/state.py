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
import json
import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opx_learning.backends import alert_hook_for, backend_for
from opx_learning.config import Settings
from opx_learning.core.windows import iso
from opx_learning.safety.audit import AuditLog, new_record, utcnow
from opx_learning.safety.chain import ADOPT_ACTION, StateMismatch
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
ADOPTED = "ADOPTED"
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
    who = _who(principal, settings, name)
    heads = kill_switch.anchor_state({"action": "INITIALISE", "by": who})
    kill_switch.mark_initialised(
        {"initialised_at": iso(now), "initialised_by": who, "store": settings.store_description,
         "chain": {"anchored_at": iso(now), "heads": _heads(heads)}}
    )
    return InitResult(
        INITIALISED,
        f"initialised {settings.store_description}: kill switch ENABLED (operations allowed)",
        settings.store_description,
        state,
    )


def _heads(heads: dict[str, Any] | None) -> dict[str, Any] | None:
    """Chain heads as JSON (None stays None)."""
    if heads is None:
        return None
    return {chain: head.to_dict() if hasattr(head, "to_dict") else head for chain, head in heads.items()}


def _refuse(
    audit: AuditLog,
    principal: Principal,
    force: bool,
    settings: Settings,
    on_alert: AlertHook,
    action: str = "REINITIALISE",
) -> None:
    what = ("adopting it accepts its current kill switch and audit trail" if action == ADOPT_ACTION
            else "re-initialising it resets the kill switch")
    message = (
        f"{SkipReason.INSUFFICIENT_AUTHORITY}: {settings.store_description} is already initialised; "
        f"{what} and requires EMERGENCY_OVERRIDE "
        f"({principal.principal} is {principal.authority})"
    )
    record = new_record(
        OperationType.KILL_SWITCH_ENABLE,
        TriggerType.MANUAL,
        principal,
        parameters={"action": action, "force": force, "store": settings.store_description},
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
    except StateMismatch:
        return True  # it opens: a swapped or tampered database is re-anchored, not moved aside
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
    old_heads = _anchored(kill_switch)
    audit, kill_switch = _stores(settings, create=True)
    new_heads = kill_switch.anchor_state({"action": "REINITIALISE", "by": principal.principal, "old": _heads(old_heads)})
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
        "old_head": _heads(old_heads),
        "new_head": _heads(new_heads),
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


def _anchored(kill_switch: KillSwitchStore) -> dict[str, Any] | None:
    try:
        return kill_switch.anchored_heads()
    except BackendUnavailable:
        return None


def _problem(kill_switch: KillSwitchStore) -> str | None:
    """What the state's checks say before an adoption (None: nothing disagrees)."""
    try:
        kill_switch.read()
    except KillSwitchUnavailable as exc:
        return str(exc)[:2000]
    return None


def _adopt_objects(settings: Settings) -> dict[str, dict[str, int]]:
    """Record the stored objects as they are now in the manifest (counts per store: adopted, changed, removed)."""
    from opx_learning.backends import backend_for
    from opx_learning.integrity.manifest import adopt_objects

    backend = backend_for(settings)
    return adopt_objects(backend.ledgers(), backend.blob_client() if settings.assets_s3_uri or settings.outcomes_s3_uri else None)


def adopt(
    settings: Settings,
    principal: Principal | None = None,
    *,
    on_alert: AlertHook | None = None,
    name: str | None = None,
) -> InitResult:
    """Accept the state as it is now and re-anchor it to its current chain heads (`init --adopt`, EMERGENCY_OVERRIDE).

    Recreates missing protecting triggers (naming them), builds the chain of a state that
    predates it, records every stored object as it is now in the manifest of stored objects
    (`results.objects`: adopted, changed, removed per store; appended rows, the history stays),
    pins the current heads as a new anchor epoch and writes one SUCCESS audit
    record (`parameters.action = "ADOPT"`, its operation the one that matches the adopted
    kill-switch state) with the old and new heads and what disagreed before.

    Args:
        settings: backend settings.
        principal: who adopts (default: resolve `name`).
        on_alert: alert hook (default: the backend's publisher); an INFO `STATE_ADOPTED` alert is sent.
        name: without `principal`, the name to resolve.

    Returns:
        An ADOPTED result with the adopted kill-switch state and the audit id.

    Raises:
        InsufficientAuthority: the principal is not EMERGENCY_OVERRIDE (audited where the trail can be written).
        KillSwitchUnavailable: there is no readable state to adopt (restore it or use `init --force`).
    """
    audit, kill_switch = _stores(settings)
    if principal is None:
        from opx_learning.safety.principals import resolve_principal

        principal = resolve_principal(name, settings=settings)
    on_alert = on_alert or alert_hook_for(settings)
    if principal.authority is not AuthorityType.EMERGENCY_OVERRIDE:
        _refuse(audit, principal, False, settings, on_alert, action=ADOPT_ACTION)
    before = _problem(kill_switch)
    old_heads = _anchored(kill_switch)
    repaired = kill_switch.prepare_adoption()
    state = kill_switch.raw_state()
    new_heads = kill_switch.anchor_state({"action": ADOPT_ACTION, "by": principal.principal, "old": _heads(old_heads),
                                          "mismatch": before})
    operation = OperationType.KILL_SWITCH_ENABLE if state.enabled else OperationType.KILL_SWITCH_DISABLE
    record = new_record(operation, TriggerType.MANUAL, principal,
                        parameters={"action": ADOPT_ACTION, "store": settings.store_description})
    results = {"state": state.to_rest(), "old_head": _heads(old_heads), "new_head": _heads(new_heads),
               "mismatch": before, **repaired, "objects": _adopt_objects(settings)}
    audit, _ = _stores(settings)
    audit.append(record.completed(AuditStatus.SUCCESS, record.start_time, results))
    now = utcnow()
    kill_switch.mark_initialised({**_marker(kill_switch), "chain": {
        "anchored_at": iso(now), "heads": _heads(new_heads), "adopted_by": principal.principal,
        "audit_id": record.audit_id}})
    try:
        on_alert("INFO", "STATE_ADOPTED", {"audit_id": record.audit_id, "principal": principal.principal,
                                           "store": settings.store_description, "old_head": _heads(old_heads),
                                           "new_head": _heads(new_heads), "mismatch": before})
    except Exception:  # noqa: BLE001 - alert delivery never undoes the adoption
        _log.exception("INFO alert of adoption %s could not be sent", record.audit_id)
    shown = "ACTIVE (operations blocked)" if state.active else "ENABLED (operations allowed)"
    repaired_note = (f"; triggers recreated: {', '.join(repaired['triggers_recreated'])}"
                     if repaired.get("triggers_recreated") else "")
    return InitResult(
        ADOPTED,
        f"adopted {settings.store_description} as it is: kill switch {shown}, chain re-anchored "
        f"(audit {record.audit_id}){repaired_note}",
        settings.store_description,
        state,
        record.audit_id,
    )


def _marker(kill_switch: KillSwitchStore) -> dict[str, Any]:
    marker = getattr(kill_switch, "marker", None)
    try:
        data = json.loads(marker.read_text()) if marker is not None and marker.exists() else {}
    except (OSError, ValueError):
        data = {}
    return data if isinstance(data, dict) else {}


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


__all__ = [
    "ADOPTED",
    "ALREADY_INITIALISED",
    "INITIALISED",
    "REINITIALISED",
    "InitResult",
    "adopt",
    "ensure_initialised",
    "initialise",
]
