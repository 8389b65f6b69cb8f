"""The guard every learning operation passes through: kill switch, maintenance, rate limit, audit (docs/design.md#safety).

Order of checks in `Guard.begin`:
1. inputs (operation type, trigger type, dates, snapshot type) -> `InvalidRequest`, nothing audited;
2. kill switch, read fresh from the store on every call (no cache): active -> SKIPPED
   KILL_SWITCH_ACTIVE; unreadable -> SKIPPED KILL_SWITCH_UNAVAILABLE plus a P1 alert.
   Only a MANUAL trigger with `emergency=True` by an EMERGENCY_OVERRIDE principal bypasses it;
3. maintenance calendar, SCHEDULED and AUTOMATION triggers only -> SKIPPED MAINTENANCE_WINDOW;
4. rate limit when `rate_limited=True` (manual and automation triggers; emergency ones count too) -> SKIPPED
   RATE_LIMIT_EXCEEDED with `retry_after`, `limit`, `remaining`;
5. the RUNNING record is written; if that fails the operation does not run (STATE_UNAVAILABLE).

A refusal is decided before any work, so its record is written once, already SKIPPED;
an allowed attempt is RUNNING until `succeed` / `fail` / `skip` completes it.
Because nothing is cached, a kill-switch disable takes effect at the next operation start;
long operations call `recheck` between stored pieces (a range run before each partition).

Adoption: a process that begins an attempt and launches a run to do the work (the CLI
trigger, a REST worker, the demo) begins it `adoptable=True`. The record then keeps the
SHA-256 of a random token that only the Attempt in that process holds; the run passes
the token back to `adopt`, which accepts it once, for one run. A process that submits
the run to a queue, where the token waits in the run's tags, first `reserve`s the record
for that run's id: then no other run (a copy of the tags, a re-execution) can adopt it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from opx_learning.core.windows import Window, WindowError, iso
from opx_learning.safety.audit import AuditLog, new_record, utcnow
from opx_learning.safety.chain import StateMismatch
from opx_learning.safety.kill_switch import KillSwitch, KillSwitchStore
from opx_learning.safety.maintenance import MaintenanceCalendar
from opx_learning.safety.models import (
    LEARNING_OPERATIONS,
    SYSTEM,
    UNATTENDED,
    AlertHook,
    AuditRecord,
    AuditStatus,
    AuditTransitionError,
    AuthorityType,
    BackendUnavailable,
    InvalidRequest,
    OperationType,
    Principal,
    RateLimitDecision,
    SafetyError,
    SkipReason,
    TriggerType,
    json_safe,
    log_alert,
)
from opx_learning.safety.rate_limit import RateLimiter

SNAPSHOT_TYPES = ("DAILY", "WEEKLY", "MONTHLY", "CUSTOM")
_log = logging.getLogger("opx_learning.safety")


def _never_raising(hook: AlertHook) -> AlertHook:
    """Wrap an alert hook so a delivery error is logged (by `log_alert`) instead of failing the operation."""

    def on_alert(severity: str, alarm: str, details: dict) -> None:
        try:
            hook(severity, alarm, details)
        except Exception as exc:  # noqa: BLE001 - alert delivery never fails the operation
            log_alert(severity, alarm, {**details, "delivery_error": f"{type(exc).__name__}: {exc}"})

    return on_alert
_DATE_KEYS = (("start_date", "end_date"), ("start", "end"))


@dataclass(frozen=True)
class Attempt:
    """One operation attempt as decided by the guard.

    `allowed=False` means the audit record is already SKIPPED with `skip_reason`
    (or could not be written at all: `audited=False`). `results` may be filled
    by the operation; `succeed` merges it into the record.
    """

    audit_id: str
    allowed: bool
    skip_reason: SkipReason | None
    operation_type: OperationType
    trigger_type: TriggerType
    principal: Principal
    parameters: dict[str, Any]
    message: str
    emergency: bool = False
    run_id: str | None = None
    record: AuditRecord | None = None
    rate_limit: RateLimitDecision | None = None
    audited: bool = True
    results: dict[str, Any] = field(default_factory=dict)
    adoption_token: str | None = field(default=None, repr=False)

    @property
    def retry_after(self) -> int | None:
        """Seconds until a rate-limited caller may retry (None unless refused by the rate limit)."""
        return self.rate_limit.retry_after if self.rate_limit and not self.rate_limit.allowed else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary (for CLI `--json` and logs)."""
        return {
            "audit_id": self.audit_id,
            "allowed": self.allowed,
            "skip_reason": self.skip_reason.value if self.skip_reason else None,
            "message": self.message,
            "operation_type": self.operation_type.value,
            "trigger_type": self.trigger_type.value,
            "triggered_by": self.principal.to_dict(),
            "emergency": self.emergency,
            "parameters": self.parameters,
            "rate_limit": self.rate_limit.to_dict() if self.rate_limit else None,
            "audited": self.audited,
        }


ADOPTION_HASH = "adoption_sha256"
ADOPTION_RUN = "adoption_run_id"


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class AdoptionRefused(AuditTransitionError):
    """A run asked to adopt a record without the launching process's token, or a second time."""


class Refused(SafetyError):
    """Raised by `Guard.operation` when the attempt is not allowed (its record is already SKIPPED)."""

    def __init__(self, attempt: Attempt) -> None:
        super().__init__(attempt.message)
        self.attempt = attempt


@dataclass(frozen=True)
class _Block:
    reason: SkipReason
    message: str
    details: dict[str, Any]


def validate_parameters(operation: OperationType, parameters: Mapping[str, Any] | None) -> dict[str, Any]:
    """Check and normalise operation parameters (dates as ISO instants, snapshot type upper case).

    Raises:
        InvalidRequest: unreadable date, end <= start, unknown snapshot type.
    """
    params = dict(parameters or {})
    for start_key, end_key in _DATE_KEYS:
        if params.get(start_key) is not None and params.get(end_key) is not None:
            try:
                window = Window.parse(params[start_key], params[end_key])
            except WindowError as exc:
                message = str(exc).replace("start:", f"{start_key}:", 1).replace("end:", f"{end_key}:", 1)
                raise InvalidRequest(message) from None
            params[start_key], params[end_key] = window.start_iso, window.end_iso
    if params.get("snapshot_type") is not None:
        snapshot_type = str(params["snapshot_type"]).strip().upper()
        if snapshot_type not in SNAPSHOT_TYPES:
            raise InvalidRequest(
                f"snapshot_type: {params['snapshot_type']!r} is not one of {', '.join(SNAPSHOT_TYPES)}"
            )
        params["snapshot_type"] = snapshot_type
    if operation is not OperationType.SNAPSHOT and "snapshot_type" in params and params["snapshot_type"] is None:
        params.pop("snapshot_type")
    return json_safe(params)


class Guard:
    """Safety checks and audit bookkeeping around every learning operation.

    Args:
        audit: audit trail store.
        kill_switch: kill-switch state store.
        rate_limiter: manual-trigger rate limiter.
        calendar: maintenance calendar (default: the runbook's; `backends.guard_for` reads `settings.maintenance_windows`).
        on_alert: `on_alert(severity, alarm, details)`; receives the P1 alert when the kill
            switch is unreadable and the kill switch's INFO changes (default: log it;
            `backends.guard_for` publishes through the backend's alert publisher).
        on_complete: called with every record this guard completes or writes terminal
            (CloudWatch metrics on the aws backend); its errors are logged, never raised.
        clock: source of "now".
    """

    def __init__(
        self,
        audit: AuditLog,
        kill_switch: KillSwitchStore,
        rate_limiter: RateLimiter,
        *,
        calendar: MaintenanceCalendar | None = None,
        on_alert: AlertHook = log_alert,
        on_complete: Callable[[AuditRecord], None] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.audit = audit
        self.rate_limiter = rate_limiter
        self.calendar = calendar if calendar is not None else MaintenanceCalendar()
        self.on_alert = _never_raising(on_alert)
        self.on_complete = on_complete
        self.clock = clock
        self.kill_switch = KillSwitch(kill_switch, audit, on_alert=self.on_alert, clock=clock)

    def begin(
        self,
        operation_type: OperationType | str,
        trigger_type: TriggerType | str,
        principal: Principal,
        parameters: Mapping[str, Any] | None = None,
        *,
        emergency: bool = False,
        run_id: str | None = None,
        rate_limited: bool = False,
        adoptable: bool = False,
    ) -> Attempt:
        """Decide whether an operation may start and write its audit record.

        `adoptable=True`: the record can be adopted once by a run that presents
        `attempt.adoption_token` (see `adopt`).

        Returns:
            An allowed Attempt with a RUNNING record, or a refused one whose record is SKIPPED.

        Raises:
            InvalidRequest: unknown operation/trigger type, bad dates or snapshot type.
        """
        operation, trigger, params = self._inputs(operation_type, trigger_type, principal, parameters)
        bypass = bool(emergency) and self._may_bypass(trigger, principal)
        if emergency:
            params["emergency"] = True
        now = self.clock()
        block = self._blocker(operation, trigger, bypass, now)
        if block is not None:
            return self._refuse(operation, trigger, principal, params, block, run_id, bypass)
        decision = None
        if rate_limited:
            try:
                decision = self.rate_limiter.acquire(principal, operation)
            except BackendUnavailable as exc:
                block = self._unavailable(SkipReason.STATE_UNAVAILABLE, operation, trigger, exc)
                return self._refuse(operation, trigger, principal, params, block, run_id, bypass)
            if not decision.allowed:
                block = _Block(
                    SkipReason.RATE_LIMIT_EXCEEDED,
                    f"{SkipReason.RATE_LIMIT_EXCEEDED}: {principal.principal} may start {decision.limit} "
                    f"{operation} per hour; retry after {decision.retry_after} seconds",
                    {"rate_limit": decision.to_dict()},
                )
                return self._refuse(operation, trigger, principal, params, block, run_id, bypass, decision)
        record = new_record(operation, trigger, principal, parameters=params, run_id=run_id)
        token = secrets.token_urlsafe(32) if adoptable else None
        hidden = {ADOPTION_HASH: _token_hash(token)} if token else {}
        if bypass or hidden:
            record = replace(record, results={**({"emergency_bypass": True} if bypass else {}), **hidden})
        try:
            self.audit.append(record)
        except BackendUnavailable as exc:
            block = self._unavailable(SkipReason.STATE_UNAVAILABLE, operation, trigger, exc)
            return self._attempt(record, False, block.reason, block.message, bypass, decision, audited=False)
        message = f"{operation} {trigger} started" + (" (emergency: kill switch bypassed)" if bypass else "")
        return replace(self._attempt(record, True, None, message, bypass, decision), adoption_token=token)

    def gate(
        self,
        operation_type: OperationType | str,
        parameters: Mapping[str, Any] | None = None,
        *,
        trigger_type: TriggerType | str = TriggerType.SCHEDULED,
        principal: Principal = SYSTEM,
        run_id: str | None = None,
        record: bool = True,
    ) -> Attempt | None:
        """Screen a tick before launching a run: None if it may launch, else the (audited) refusal.

        Schedules call this and return `SkipReason(attempt.message)` on a refusal; the
        launched run still calls `begin` (which re-checks) and writes the RUNNING record.
        `record=False` (a dry run) decides the same way but writes and alerts nothing.
        """
        operation, trigger, params = self._inputs(operation_type, trigger_type, principal, parameters)
        if not record:
            block = self._blocker(operation, trigger, False, self.clock(), alert=False)
            if block is None:
                return None
            draft = new_record(operation, trigger, principal, parameters=params, run_id=run_id)
            return self._attempt(draft, False, block.reason, block.message, False, None, audited=False)
        block = self._blocker(operation, trigger, False, self.clock())
        if block is None:
            return None
        return self._refuse(operation, trigger, principal, params, block, run_id, False)

    def blocked(self, what: str, trigger_type: TriggerType | str) -> tuple[SkipReason, str] | None:
        """Whether the kill switch (or, for an unattended trigger, a maintenance window) holds back an unaudited stage now.

        The input stage that is not a learning operation (validating a day's outcomes) asks this
        when the automation launched it: `(reason, message)` when blocked, else None; nothing is written.
        """
        block = self._blocker(what, TriggerType.parse(trigger_type), False, self.clock())  # type: ignore[arg-type]
        return None if block is None else (block.reason, block.message)

    def adopt(
        self,
        audit_id: str,
        *,
        run_id: str,
        token: str | None,
        operation_type: OperationType | str | None = None,
    ) -> Attempt:
        """Continue an attempt begun `adoptable` elsewhere (a trigger that launched a run), re-checking the kill switch.

        The run must present the token of the process that began the attempt; a record is
        adopted once, by one run (the store's conditional write decides between racing runs).

        Raises:
            AuditNotFound: unknown id.
            AuditTransitionError: the record is terminal or belongs to another operation.
            AdoptionRefused: wrong or missing token, or the record was adopted already.
        """
        record = self.audit._require_running(audit_id)
        expected = record.results.get(ADOPTION_HASH)
        if not token or not isinstance(expected, str) or not hmac.compare_digest(_token_hash(token), expected):
            raise AdoptionRefused(f"audit record {audit_id}: the run does not hold the launching process's token")
        if operation_type is not None and record.operation_type is not OperationType.parse(operation_type):
            raise AuditTransitionError(f"audit record {audit_id} is a {record.operation_type}, not {operation_type}")
        if record.run_id is not None:
            raise AdoptionRefused(f"audit record {audit_id} was adopted already by run {record.run_id}")
        reserved = record.results.get(ADOPTION_RUN)
        if reserved is not None and reserved != run_id:
            raise AdoptionRefused(f"audit record {audit_id} is reserved for run {reserved}")
        bypass = bool(record.results.get("emergency_bypass"))
        updated = replace(record, run_id=run_id, version=record.version + 1)
        if not self.audit._update_running(updated, record.version):
            raise AdoptionRefused(f"audit record {audit_id} changed concurrently; adopted by another run")
        record = updated
        block = self._blocker(record.operation_type, record.trigger_type, bypass, self.clock())
        if block is not None:
            self._complete_skipped(audit_id, block)
            return self._attempt(record, False, block.reason, block.message, bypass, None)
        return self._attempt(record, True, None, f"{record.operation_type} {record.trigger_type} resumed", bypass, None)

    def reserve(self, audit_id: str, *, run_id: str, token: str | None) -> AuditRecord:
        """Bind an adoptable RUNNING record to the one run that may adopt it, before that run is submitted.

        Args:
            audit_id: the record begun `adoptable`.
            run_id: id of the run about to be created with the adoption tags.
            token: the attempt's `adoption_token` (only the process that began the attempt holds it).

        Returns:
            The updated record.

        Raises:
            AuditNotFound: unknown id.
            AuditTransitionError: the record is no longer RUNNING.
            AdoptionRefused: wrong or missing token, or the record is adopted or reserved already.
        """
        record = self.audit._require_running(audit_id)
        expected = record.results.get(ADOPTION_HASH)
        if not token or not isinstance(expected, str) or not hmac.compare_digest(_token_hash(token), expected):
            raise AdoptionRefused(f"audit record {audit_id}: the caller does not hold the launching process's token")
        if record.run_id is not None or record.results.get(ADOPTION_RUN) is not None:
            taken = record.run_id or record.results[ADOPTION_RUN]
            raise AdoptionRefused(f"audit record {audit_id} is taken already by run {taken}")
        updated = replace(record, results={**record.results, ADOPTION_RUN: run_id}, version=record.version + 1)
        if not self.audit._update_running(updated, record.version):
            raise AdoptionRefused(f"audit record {audit_id} changed concurrently")
        return updated

    def recheck(self, attempt: Attempt) -> tuple[SkipReason, str] | None:
        """Whether an allowed attempt must stop now (kill switch disabled or unreadable since it began).

        Returns:
            None to go on, else `(reason, message)`; an unreadable state also raises the P1 alert.
        """
        block = self._blocker(attempt.operation_type, attempt.trigger_type, attempt.emergency, self.clock())
        return (block.reason, block.message) if block is not None else None

    def succeed(self, attempt: Attempt, results: Mapping[str, Any] | None = None) -> AuditRecord:
        """Complete an allowed attempt as SUCCESS with `attempt.results` plus `results`."""
        return self._completed(
            self.audit.complete(attempt.audit_id, AuditStatus.SUCCESS, results={**attempt.results, **dict(results or {})})
        )

    def fail(
        self,
        attempt: Attempt,
        error: BaseException | str,
        reason: str | None = None,
        results: Mapping[str, Any] | None = None,
    ) -> AuditRecord:
        """Complete an allowed attempt as FAILED; the error text is truncated to 2000 characters."""
        text = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(error)
        extra = {**attempt.results, **dict(results or {})}
        if reason:
            extra["failure_reason"] = str(reason)
        return self._completed(
            self.audit.complete(attempt.audit_id, AuditStatus.FAILED, results=extra, error_message=text)
        )

    def skip(self, attempt: Attempt, reason: SkipReason | str, message: str | None = None) -> AuditRecord:
        """Complete an allowed attempt as SKIPPED (the operation decided not to run after all)."""
        results = {**attempt.results, "skip_reason": str(reason)}
        if message:
            results["message"] = message
        return self._completed(self.audit.complete(attempt.audit_id, AuditStatus.SKIPPED, results=results))

    @contextmanager
    def operation(
        self,
        operation_type: OperationType | str,
        trigger_type: TriggerType | str,
        principal: Principal,
        parameters: Mapping[str, Any] | None = None,
        *,
        emergency: bool = False,
        run_id: str | None = None,
        rate_limited: bool = False,
    ) -> Iterator[Attempt]:
        """`begin` + SUCCESS on normal exit / FAILED (re-raised) on exception.

        Raises:
            Refused: the attempt was not allowed (already audited as SKIPPED).
        """
        attempt = self.begin(
            operation_type,
            trigger_type,
            principal,
            parameters,
            emergency=emergency,
            run_id=run_id,
            rate_limited=rate_limited,
        )
        if not attempt.allowed:
            raise Refused(attempt)
        try:
            yield attempt
        except BaseException as exc:
            self.fail(attempt, exc)
            raise
        self.succeed(attempt)

    def _inputs(
        self,
        operation_type: OperationType | str,
        trigger_type: TriggerType | str,
        principal: Principal,
        parameters: Mapping[str, Any] | None,
    ) -> tuple[OperationType, TriggerType, dict[str, Any]]:
        operation = OperationType.parse(operation_type)
        if operation not in LEARNING_OPERATIONS:
            allowed = ", ".join(op.value for op in LEARNING_OPERATIONS)
            raise InvalidRequest(f"operation_type: {operation} is not a learning operation ({allowed})")
        trigger = TriggerType.parse(trigger_type)
        if not isinstance(principal, Principal):
            raise InvalidRequest(f"principal: {principal!r} is not a resolved Principal")
        if principal.authority is AuthorityType.SYSTEM and trigger not in UNATTENDED:
            raise InvalidRequest(f"principal: SYSTEM authority is reserved for SCHEDULED and AUTOMATION runs, not {trigger}")
        return operation, trigger, validate_parameters(operation, parameters)

    @staticmethod
    def _may_bypass(trigger: TriggerType, principal: Principal) -> bool:
        return trigger is TriggerType.MANUAL and principal.authority is AuthorityType.EMERGENCY_OVERRIDE

    def _blocker(
        self, operation: OperationType, trigger: TriggerType, bypass: bool, now: datetime, *, alert: bool = True
    ) -> _Block | None:
        try:
            state = self.kill_switch.status(now, alert=alert and not bypass)
        except StateMismatch as exc:
            if bypass:
                return None
            # KillSwitch.status raised the P1 STATE_MISMATCH alert already.
            return _Block(SkipReason.STATE_MISMATCH,
                          f"{operation} {trigger} not run (fail closed): {exc}", {})
        except BackendUnavailable as exc:
            if bypass:
                return None
            return self._unavailable(SkipReason.KILL_SWITCH_UNAVAILABLE, operation, trigger, exc, alert=alert)
        if state.active and not bypass:
            who = state.disabled_by.principal if state.disabled_by else "unknown"
            since = iso(state.disabled_at) if state.disabled_at else "unknown time"
            return _Block(
                SkipReason.KILL_SWITCH_ACTIVE,
                f"{SkipReason.KILL_SWITCH_ACTIVE}: kill switch disabled by {who} at {since} "
                f"({state.reason}); {operation} {trigger} not run",
                {"kill_switch": state.to_rest()},
            )
        if trigger in UNATTENDED:
            window = self.calendar.active(now)
            if window is not None:
                return _Block(
                    SkipReason.MAINTENANCE_WINDOW,
                    f"{SkipReason.MAINTENANCE_WINDOW}: {operation} {trigger} skipped during maintenance "
                    f"window {self.calendar.describe(window)}",
                    {"maintenance_window": {"start": window.start_iso, "end": window.end_iso}},
                )
        return None

    def _unavailable(
        self, reason: SkipReason, operation: OperationType, trigger: TriggerType, exc: Exception, *, alert: bool = True
    ) -> _Block:
        message = f"{reason}: {operation} {trigger} not run (fail closed): {exc}"
        if alert:
            self.on_alert(
                "P1",
                reason.value,
                {"operation": operation.value, "trigger_type": trigger.value, "error": str(exc)[:2000]},
            )
        return _Block(reason, message, {})

    def _refuse(
        self,
        operation: OperationType,
        trigger: TriggerType,
        principal: Principal,
        params: dict[str, Any],
        block: _Block,
        run_id: str | None,
        bypass: bool,
        decision: RateLimitDecision | None = None,
    ) -> Attempt:
        record = new_record(operation, trigger, principal, parameters=params, run_id=run_id)
        record = record.completed(
            AuditStatus.SKIPPED,
            record.start_time,
            {"skip_reason": block.reason.value, "message": block.message, **block.details},
        )
        audited = True
        try:
            self._completed(self.audit.append(record))
        except BackendUnavailable as exc:
            audited = False
            self.on_alert(
                "P1",
                SkipReason.STATE_UNAVAILABLE.value,
                {"operation": operation.value, "audit_id": record.audit_id, "error": str(exc)[:2000]},
            )
        return self._attempt(record, False, block.reason, block.message, bypass, decision, audited=audited)

    def _complete_skipped(self, audit_id: str, block: _Block) -> None:
        self._completed(
            self.audit.complete(
                audit_id,
                AuditStatus.SKIPPED,
                results={"skip_reason": block.reason.value, "message": block.message, **block.details},
            )
        )

    def _completed(self, record: AuditRecord) -> AuditRecord:
        if self.on_complete is not None:
            try:
                self.on_complete(record)
            except Exception:  # noqa: BLE001 - metrics never fail the operation
                _log.exception("on_complete hook failed for %s", record.audit_id)
        return record

    @staticmethod
    def _attempt(
        record: AuditRecord,
        allowed: bool,
        reason: SkipReason | None,
        message: str,
        bypass: bool,
        decision: RateLimitDecision | None,
        *,
        audited: bool = True,
    ) -> Attempt:
        return Attempt(
            audit_id=record.audit_id,
            allowed=allowed,
            skip_reason=reason,
            operation_type=record.operation_type,
            trigger_type=record.trigger_type,
            principal=record.triggered_by,
            parameters=record.parameters,
            message=message,
            emergency=bypass,
            run_id=record.run_id,
            record=record if audited else None,
            rate_limit=decision,
            audited=audited,
        )
