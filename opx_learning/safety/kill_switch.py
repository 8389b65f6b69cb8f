"""Kill switch (docs/design.md#kill-switch): state store, authority-checked and audited changes, planned re-enable."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from opx_learning.core.windows import Instant, iso, to_utc
from opx_learning.safety.audit import AuditLog, new_record, utcnow
from opx_learning.safety.models import (
    SYSTEM,
    AlertHook,
    AuditStatus,
    AuditTransitionError,
    AuthorityType,
    BackendUnavailable,
    InsufficientAuthority,
    InvalidRequest,
    KillSwitchState,
    KillSwitchUnavailable,
    OperationType,
    Principal,
    SkipReason,
    TriggerType,
    log_alert,
)

_MAX_CAS_ATTEMPTS = 10
_COMPLETION_ATTEMPTS = 3
MAX_REASON_CHARS = 1000
NOT_INITIALISED_HINT = (
    "run `opx-learning init` to create it with the kill switch ENABLED "
    "(`opx-learning demo` initialises its own home; on aws `opx-learning aws init` does)"
)
LOST_HINT = (
    "restore the state from a backup, or re-initialise it with `opx-learning init --force` "
    "(EMERGENCY_OVERRIDE only, audited; the kill switch restarts ENABLED)"
)
_log = logging.getLogger("opx_learning.safety")


class KillSwitchStore(ABC):
    """Where the kill-switch state lives; every read goes to the store (no cache)."""

    @abstractmethod
    def read(self) -> KillSwitchState:
        """The stored state; nothing stored is never "enabled" (fail closed).

        Raises:
            KillSwitchUnavailable: nothing is stored (not initialised, deleted, truncated), or the
                state cannot be read or is malformed; the message says how to restore or initialise it.
        """

    @abstractmethod
    def initialised(self) -> bool:
        """Whether this store was initialised before (so creating it again is a re-initialisation)."""

    @abstractmethod
    def mark_initialised(self, details: dict[str, Any]) -> None:
        """Record beside the state that it was initialised (`details`: when, by whom, which store)."""

    def anchored_heads(self) -> dict[str, Any] | None:
        """The chain heads anchored outside the store, by chain (None: no anchor)."""
        return None

    def anchor_state(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Pin the store's current chain heads as a new anchor epoch (`entry`: who and why); returns the heads."""
        return {}

    def prepare_adoption(self) -> dict[str, Any]:
        """Repair what adoption repairs (missing triggers, a chain for a store that predates it); returns what it did."""
        return {}

    def raw_state(self) -> KillSwitchState:
        """The stored state without the anchor and audit-trail checks (adoption accepts it as it is)."""
        return self.read()

    @abstractmethod
    def write(self, state: KillSwitchState, expected_version: int | None) -> bool:
        """Store `state` iff the stored version equals `expected_version` (None: unconditionally).

        Returns:
            False when another writer changed the state first.

        Raises:
            BackendUnavailable: the store cannot be written.
        """


@dataclass(frozen=True)
class KillSwitchChange:
    """Result of an accepted disable / enable (the REST response body)."""

    status: str
    message: str
    audit_id: str
    state: KillSwitchState

    def to_rest(self) -> dict[str, Any]:
        """`{status, message, auditId}` as in the runbook."""
        return {"status": self.status, "message": self.message, "auditId": self.audit_id}


def validate_reason(reason: Any) -> str:
    """The trimmed `reason` of a disable, 1..1000 characters.

    Raises:
        InvalidRequest: missing, blank or longer than 1000 characters (the message gives the length).
    """
    text = "" if reason is None else str(reason).strip()
    if not text:
        raise InvalidRequest("reason: a reason is required to disable the kill switch (1..1000 characters)")
    if len(text) > MAX_REASON_CHARS:
        raise InvalidRequest(
            f"reason: {len(text)} characters is too long; at most {MAX_REASON_CHARS} characters (after trimming)"
        )
    return text


class KillSwitch:
    """Reads and changes the kill switch; only EMERGENCY_OVERRIDE may change it, every attempt is audited.

    Args:
        store: kill-switch state store.
        audit: audit trail receiving KILL_SWITCH_DISABLE / KILL_SWITCH_ENABLE records.
        on_alert: alert hook (INFO on every change).
        clock: source of "now" (tests pass a fixed clock).
    """

    def __init__(
        self,
        store: KillSwitchStore,
        audit: AuditLog,
        *,
        on_alert: AlertHook = log_alert,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.audit = audit
        self.on_alert = on_alert
        self.clock = clock

    def status(self, now: datetime | None = None, *, alert: bool = True) -> KillSwitchState:
        """The current state; a planned disable whose `until` has passed is re-enabled first (as SYSTEM).

        Args:
            now: reference time (default: the clock).
            alert: raise the P1 `STATE_MISMATCH` alert when the state disagrees with its anchor or trail.

        Raises:
            StateMismatch: the state was swapped, rolled back or edited (P1 alert unless `alert=False`).
            KillSwitchUnavailable: the state cannot be read.
        """
        from opx_learning.safety.chain import (
            AUDIT_TAMPERED,
            STATE_MISMATCH,
            ChainTampered,
            StateMismatch,
        )

        try:
            state = self.store.read()
        except StateMismatch as exc:
            if alert:
                details = {"error": str(exc)[:2000], **self._heads()}
                if isinstance(exc, ChainTampered):
                    self._alert("P0", AUDIT_TAMPERED, {**details, "source": "open"})
                self._alert("P1", STATE_MISMATCH, details)
            raise
        now = now or self.clock()
        if state.active and state.until is not None and now >= state.until:
            return self._planned_enable(state, now)
        return state

    def disable(self, principal: Principal, reason: str | None, *, until: Instant | None = None) -> KillSwitchChange:
        """Activate the kill switch (block operations), optionally until a planned time.

        Raises:
            InvalidRequest: reason missing, `until` unreadable or not in the future.
            InsufficientAuthority: principal is not EMERGENCY_OVERRIDE (the refusal is audited).
            BackendUnavailable: the change could not be stored (audited as FAILED when possible).
        """
        reason = validate_reason(reason)
        now = self.clock()
        until_at: datetime | None = None
        if until is not None:
            try:
                until_at = to_utc(until, "until")
            except ValueError as exc:
                raise InvalidRequest(str(exc)) from None
            if until_at <= now:
                raise InvalidRequest(f"until: {iso(until_at)} must be in the future (now {iso(now)})")
        parameters = {"reason": reason, "until": iso(until_at) if until_at else None}
        self._authorize(OperationType.KILL_SWITCH_DISABLE, principal, parameters)

        def build(current: KillSwitchState | None) -> KillSwitchState:
            # Re-disabling an active switch updates who/why/until but keeps when it became active.
            still_active = current is not None and current.active and current.disabled_at is not None
            return KillSwitchState(
                enabled=False,
                disabled_at=current.disabled_at if still_active else now,  # type: ignore[union-attr]
                disabled_by=principal,
                reason=reason,
                last_modified=now,
                until=until_at,
                version=(current.version if current else 0) + 1,
            )

        message = "Kill switch disabled - all automated operations blocked"
        if until_at is not None:
            message += f" until {iso(until_at)}"
        return self._change(OperationType.KILL_SWITCH_DISABLE, principal, parameters, build, "DISABLED", message)

    def enable(self, principal: Principal) -> KillSwitchChange:
        """Deactivate the kill switch (allow operations).

        Raises:
            InsufficientAuthority: principal is not EMERGENCY_OVERRIDE (the refusal is audited).
            BackendUnavailable: the change could not be stored.
        """
        self._authorize(OperationType.KILL_SWITCH_ENABLE, principal, {})
        now = self.clock()

        def build(current: KillSwitchState | None) -> KillSwitchState:
            return KillSwitchState(enabled=True, last_modified=now, version=(current.version if current else 0) + 1)

        message = "Kill switch enabled - automated operations allowed"
        return self._change(OperationType.KILL_SWITCH_ENABLE, principal, {}, build, "ENABLED", message)

    def _authorize(self, operation: OperationType, principal: Principal, parameters: dict[str, Any]) -> None:
        if principal.authority is AuthorityType.EMERGENCY_OVERRIDE:
            return
        message = (
            f"{SkipReason.INSUFFICIENT_AUTHORITY}: {principal.principal} has authority "
            f"{principal.authority}; changing the kill switch requires EMERGENCY_OVERRIDE"
        )
        record = new_record(operation, TriggerType.MANUAL, principal, parameters=parameters)
        refused = record.completed(
            AuditStatus.SKIPPED,
            record.start_time,
            {"skip_reason": SkipReason.INSUFFICIENT_AUTHORITY.value, "message": message},
        )
        self.audit.append(refused)
        raise InsufficientAuthority(message, refused.audit_id)

    def _report_done(self, record_id: str, results: dict[str, Any]) -> None:
        """Complete the record of a change that took effect as SUCCESS, falling back to a smaller record."""
        attempts = [results, {"state_written": True}]
        error: Exception | None = None
        for attempt in range(_COMPLETION_ATTEMPTS):
            try:
                self.audit.complete(record_id, AuditStatus.SUCCESS, results=attempts[min(attempt, 1)])
                return
            except AuditTransitionError:
                return  # already terminal
            except Exception as exc:  # noqa: BLE001 - the change took effect; never report it as failed
                error = exc
        _log.error("kill switch changed but audit record %s could not be completed: %s", record_id, error)
        self._alert("P1", "AUDIT_INCOMPLETE", {"audit_id": record_id, "error": f"{type(error).__name__}: {error}"[:2000]})

    def _heads(self) -> dict[str, Any]:
        """The anchored chain heads, for alert details (empty when they cannot be read)."""
        try:
            heads = self.store.anchored_heads()
        except Exception:  # noqa: BLE001 - the alert goes out without them
            return {}
        if not heads:
            return {}
        return {"anchored_heads": {chain: head.to_dict() if hasattr(head, "to_dict") else head
                                   for chain, head in heads.items()}}

    def _alert(self, severity: str, alarm: str, details: dict[str, Any]) -> None:
        try:
            self.on_alert(severity, alarm, details)
        except Exception as exc:  # noqa: BLE001 - alert delivery never undoes a change
            log_alert(severity, alarm, {**details, "delivery_error": f"{type(exc).__name__}: {exc}"})

    def _change(
        self,
        operation: OperationType,
        principal: Principal,
        parameters: dict[str, Any],
        build: Callable[[KillSwitchState | None], KillSwitchState],
        status: str,
        message: str,
    ) -> KillSwitchChange:
        record = self.audit.start(operation, TriggerType.MANUAL, principal, parameters=parameters)
        try:
            state = self._write_with_retry(build)
        except BackendUnavailable as exc:
            try:
                self.audit.complete(record.audit_id, AuditStatus.FAILED, error_message=f"{type(exc).__name__}: {exc}")
            except Exception:  # noqa: BLE001 - the sensor closes a RUNNING record; the write error is what matters
                _log.exception("audit record %s of a failed kill-switch change could not be completed", record.audit_id)
            raise
        self._report_done(record.audit_id, {"state": state.to_rest()})
        self._alert(
            "INFO",
            f"KILL_SWITCH_{status}",
            {"audit_id": record.audit_id, "principal": principal.principal, "state": state.to_rest()},
        )
        return KillSwitchChange(status, message, record.audit_id, state)

    def _write_with_retry(self, build: Callable[[KillSwitchState | None], KillSwitchState]) -> KillSwitchState:
        for _ in range(_MAX_CAS_ATTEMPTS):
            try:
                current: KillSwitchState | None = self.store.read()
            except KillSwitchUnavailable:
                # A malformed or missing state is overwritten by an authorized change.
                current = None
            state = build(current)
            try:
                written = self.store.write(state, current.version if current else None)
            except BackendUnavailable:
                # The write may have landed before the error (e.g. a timeout after DynamoDB stored it).
                if self._stored(state):
                    return state
                raise
            if written:
                return state
        raise BackendUnavailable("kill switch changed concurrently too often; try again")

    def _stored(self, state: KillSwitchState) -> bool:
        try:
            return self.store.read() == state
        except BackendUnavailable:
            return False

    def _planned_enable(self, state: KillSwitchState, now: datetime) -> KillSwitchState:
        enabled = KillSwitchState(enabled=True, last_modified=now, version=state.version + 1)
        if not self.store.write(enabled, state.version):
            return self.store.read()
        record = new_record(
            OperationType.KILL_SWITCH_ENABLE,
            TriggerType.SCHEDULED,
            SYSTEM,
            parameters={"reason": "planned window ended", "until": iso(state.until) if state.until else None},
            start_time=now,
        )
        self.audit.append(
            record.completed(
                AuditStatus.SUCCESS,
                now,
                {"state": enabled.to_rest(), "previous_reason": state.reason},
            )
        )
        self.on_alert("INFO", "KILL_SWITCH_ENABLED", {"audit_id": record.audit_id, "principal": SYSTEM.principal})
        return enabled
