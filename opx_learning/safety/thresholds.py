"""Threshold proposals as change requests (docs/thresholds.md): propose, approve or reject (four eyes), versioned sets.

- `propose`: any authenticated principal turns a calibration's `recommended_thresholds` into a
  PENDING proposal (audited THRESHOLD_PROPOSAL). Nothing changes yet.
- `approve`: an ON_CALL_SRE or EMERGENCY_OVERRIDE principal other than the proposer makes the
  proposal the next approved version (n + 1; audited THRESHOLD_APPROVAL). The kill switch blocks
  approvals: while it is active (or unreadable) the attempt is audited SKIPPED
  KILL_SWITCH_ACTIVE (KILL_SWITCH_UNAVAILABLE, plus a P1 alert) and nothing changes.
- `reject`: the same principals, with a reason (audited THRESHOLD_REJECTION); allowed while the
  kill switch is active, since it changes no threshold.

Every refusal (insufficient authority, approving one's own proposal, a proposal no longer
PENDING, the kill switch) is audited SKIPPED with its reason before the error is raised.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from opx_learning.safety.audit import AuditLog, new_record, utcnow
from opx_learning.safety.chain import StateMismatch
from opx_learning.safety.kill_switch import KillSwitch
from opx_learning.safety.models import (
    AlertHook,
    AuditRecord,
    AuditStatus,
    AuthorityType,
    BackendUnavailable,
    InsufficientAuthority,
    InvalidRequest,
    OperationType,
    Principal,
    SafetyError,
    SkipReason,
    TriggerType,
)
from opx_learning.safety.threshold_store import (
    ProposalStatus,
    ThresholdProposal,
    ThresholdSet,
    ThresholdStore,
)

DECIDERS = (AuthorityType.ON_CALL_SRE, AuthorityType.EMERGENCY_OVERRIDE)
MAX_REASON_CHARS = 1000
NOT_PENDING = "PROPOSAL_NOT_PENDING"
OWN_PROPOSAL = "OWN_PROPOSAL"
_RETRIES = 20


class ProposalNotFound(SafetyError, LookupError):
    """No proposal has the requested id."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "proposal not found"


class ProposalNotPending(SafetyError):
    """The proposal was approved or rejected already (the refusal is audited)."""

    def __init__(self, message: str, audit_id: str | None = None, status: str | None = None) -> None:
        super().__init__(message)
        self.audit_id = audit_id
        self.status = status


class ApprovalBlocked(SafetyError):
    """The kill switch is active or unreadable: no approval takes effect (the refusal is audited)."""

    def __init__(self, message: str, reason: SkipReason, audit_id: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.audit_id = audit_id


@dataclass(frozen=True)
class Approval:
    """An approval that took effect: the decided proposal and the new current set."""

    proposal: ThresholdProposal
    current: ThresholdSet
    audit_id: str


def check_thresholds(thresholds: Any, source: str) -> dict[str, float | None]:
    """Validate a `recommended_thresholds` mapping: boundary -> confidence in [0, 1] or None, at least one set.

    Raises:
        InvalidRequest: not a mapping, a value out of range, or every threshold null.
    """
    if not isinstance(thresholds, Mapping) or not thresholds:
        raise InvalidRequest(f"recommended_thresholds: {source} has no recommended thresholds")
    checked: dict[str, float | None] = {}
    for boundary, value in thresholds.items():
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= float(value) <= 1.0:
                raise InvalidRequest(f"recommended_thresholds: {boundary} = {value!r} in {source} is not in [0, 1]")
            value = float(value)
        checked[str(boundary)] = value
    if all(value is None for value in checked.values()):
        raise InvalidRequest(
            f"recommended_thresholds: every threshold of {source} is null (no band boundary is ever reached); "
            "nothing to propose"
        )
    return checked


def check_reason(reason: str | None) -> str:
    """A rejection reason of 1..1000 characters (trimmed).

    Raises:
        InvalidRequest: missing, empty or too long.
    """
    text = (reason or "").strip()
    if not text:
        raise InvalidRequest("reason: a reason is required to reject a proposal (1..1000 characters)")
    if len(text) > MAX_REASON_CHARS:
        raise InvalidRequest(f"reason: {len(text)} characters is too long; at most {MAX_REASON_CHARS}")
    return text


class ThresholdReview:
    """Proposals, four-eyes decisions and the versioned approved thresholds, over one backend.

    Args:
        store: where proposals and approved versions live.
        audit: the audit trail (the same as the guard's).
        kill_switch: the kill switch approvals must pass.
        on_alert: receives the P1 alert when the kill switch cannot be read.
    """

    def __init__(self, store: ThresholdStore, audit: AuditLog, kill_switch: KillSwitch, on_alert: AlertHook) -> None:
        self.store = store
        self.audit = audit
        self.kill_switch = kill_switch
        self.on_alert = on_alert

    def get(self, proposal_id: str) -> ThresholdProposal:
        """The proposal with this id.

        Raises:
            ProposalNotFound: no such proposal.
        """
        proposal = self.store.get(str(proposal_id).strip())
        if proposal is None:
            raise ProposalNotFound(f"proposal_id: no threshold proposal {proposal_id!r} (see `thresholds list`)")
        return proposal

    def proposals(self) -> list[ThresholdProposal]:
        """Every proposal, oldest first."""
        return self.store.proposals()

    def current(self) -> ThresholdSet | None:
        """The current approved set, or None before the first approval."""
        return self.store.current()

    def history(self) -> list[ThresholdSet]:
        """Every approved version, oldest first."""
        return self.store.history()

    def propose(self, principal: Principal, calibration: Mapping[str, Any], source: Mapping[str, Any]) -> ThresholdProposal:
        """Turn a calibration's `recommended_thresholds` into a PENDING proposal (audited THRESHOLD_PROPOSAL).

        Args:
            principal: the proposer.
            calibration: a stored calibration (`Calibration.to_dict()` form).
            source: where it was read (asset, partition), kept with the proposal.

        Raises:
            InvalidRequest: the calibration has no usable thresholds (nothing audited).
            BackendUnavailable: the store cannot be written (audited FAILED when possible).
        """
        calibration_id = str(calibration.get("calibration_id") or "")
        where = f"calibration {calibration_id or '(no id)'}"
        thresholds = check_thresholds(calibration.get("recommended_thresholds"), where)
        full_source = {
            "calibration_id": calibration_id,
            "window_start": calibration.get("window_start"),
            "window_end": calibration.get("window_end"),
            "outcome_count": calibration.get("outcome_count"),
            **dict(source),
        }
        record = self._start(OperationType.THRESHOLD_PROPOSAL, principal, {"source": full_source})
        try:
            current = self.store.current()
            proposal = ThresholdProposal(
                proposal_id=f"tp-{uuid.uuid4().hex[:10]}",
                status=ProposalStatus.PENDING,
                thresholds=thresholds,
                source=full_source,
                proposed_by=principal,
                proposed_at=record.start_time,
                proposal_audit_id=record.audit_id,
                base_version=current.version if current else 0,
            )
            self.store.create(proposal)
        except Exception as exc:
            self._finish(record, AuditStatus.FAILED, error=f"{type(exc).__name__}: {exc}")
            raise
        self._finish(record, AuditStatus.SUCCESS, {"proposal_id": proposal.proposal_id, "thresholds": thresholds,
                                                    "base_version": proposal.base_version})
        return proposal

    def approve(self, principal: Principal, proposal_id: str) -> Approval:
        """Approve a PENDING proposal: it becomes the current set, version n + 1 (audited THRESHOLD_APPROVAL).

        Raises:
            ProposalNotFound: unknown id (nothing audited).
            InsufficientAuthority: not ON_CALL_SRE / EMERGENCY_OVERRIDE, or the proposer (audited).
            ApprovalBlocked: the kill switch is active or unreadable (audited).
            ProposalNotPending: approved or rejected already, also by a concurrent decision (audited).
        """
        operation = OperationType.THRESHOLD_APPROVAL
        proposal = self.get(proposal_id)
        params = {"proposal_id": proposal.proposal_id, "action": "APPROVE"}
        self._authorize(operation, principal, proposal, params)
        self._kill_switch_open(principal, params)
        self._pending(operation, principal, proposal, params)
        record = self._start(operation, principal, params)
        try:
            for _ in range(_RETRIES):
                current = self.store.current()
                version = (current.version if current else 0) + 1
                now = utcnow()
                decided = replace(proposal, status=ProposalStatus.APPROVED, decided_by=principal, decided_at=now,
                                  decision_audit_id=record.audit_id, version=version)
                approved = ThresholdSet(version, dict(proposal.thresholds), proposal.proposal_id, principal, now,
                                        proposal.proposed_by, record.audit_id, dict(proposal.source))
                if self.store.decide(decided, approved, version - 1):
                    results = {"proposal_id": proposal.proposal_id, "version": version,
                               "previous_version": version - 1, "thresholds": dict(proposal.thresholds)}
                    self._finish(record, AuditStatus.SUCCESS, results)
                    return Approval(decided, approved, record.audit_id)
                latest = self.get(proposal.proposal_id)
                if latest.status is not ProposalStatus.PENDING:
                    raise self._lost(record, latest)
            raise BackendUnavailable(f"approval of {proposal.proposal_id}: the current version kept changing")
        except ProposalNotPending:
            raise
        except Exception as exc:
            self._finish(record, AuditStatus.FAILED, error=f"{type(exc).__name__}: {exc}")
            raise

    def reject(self, principal: Principal, proposal_id: str, reason: str | None) -> ThresholdProposal:
        """Reject a PENDING proposal with a reason (audited THRESHOLD_REJECTION); no threshold changes.

        Raises:
            InvalidRequest: missing or too long reason (nothing audited).
            ProposalNotFound: unknown id (nothing audited).
            InsufficientAuthority: not ON_CALL_SRE / EMERGENCY_OVERRIDE, or the proposer (audited).
            ProposalNotPending: approved or rejected already (audited).
        """
        operation = OperationType.THRESHOLD_REJECTION
        text = check_reason(reason)
        proposal = self.get(proposal_id)
        params = {"proposal_id": proposal.proposal_id, "action": "REJECT", "reason": text}
        self._authorize(operation, principal, proposal, params)
        self._pending(operation, principal, proposal, params)
        record = self._start(operation, principal, params)
        decided = replace(proposal, status=ProposalStatus.REJECTED, decided_by=principal, decided_at=utcnow(),
                          decision_audit_id=record.audit_id, reason=text)
        try:
            won = self.store.decide(decided, None, 0)
        except Exception as exc:
            self._finish(record, AuditStatus.FAILED, error=f"{type(exc).__name__}: {exc}")
            raise
        if not won:
            raise self._lost(record, self.get(proposal.proposal_id))
        self._finish(record, AuditStatus.SUCCESS, {"proposal_id": proposal.proposal_id, "reason": text})
        return decided

    def _start(self, operation: OperationType, principal: Principal, params: dict[str, Any]) -> AuditRecord:
        return self.audit.append(new_record(operation, TriggerType.MANUAL, principal, parameters=params))

    def _finish(
        self, record: AuditRecord, status: AuditStatus, results: dict[str, Any] | None = None, error: str | None = None
    ) -> None:
        self.audit.complete(record.audit_id, status, results=results, error_message=error)

    def _refuse(
        self, operation: OperationType, principal: Principal, params: dict[str, Any], reason: str, message: str
    ) -> str:
        """Append an already SKIPPED record for a refusal decided up front; its id."""
        record = new_record(operation, TriggerType.MANUAL, principal, parameters=params)
        record = record.completed(AuditStatus.SKIPPED, record.start_time, {"skip_reason": reason, "message": message})
        self.audit.append(record)
        return record.audit_id

    def _authorize(
        self, operation: OperationType, principal: Principal, proposal: ThresholdProposal, params: dict[str, Any]
    ) -> None:
        verb = "approve" if operation is OperationType.THRESHOLD_APPROVAL else "reject"
        if principal.authority not in DECIDERS:
            message = (
                f"{SkipReason.INSUFFICIENT_AUTHORITY}: only ON_CALL_SRE or EMERGENCY_OVERRIDE principals may {verb} "
                f"threshold proposals; {principal.principal} is {principal.authority}"
            )
            audit_id = self._refuse(operation, principal, params, SkipReason.INSUFFICIENT_AUTHORITY.value, message)
            raise InsufficientAuthority(message, audit_id)
        if principal.principal == proposal.proposed_by.principal:
            message = (
                f"{SkipReason.INSUFFICIENT_AUTHORITY}: four eyes: {principal.principal} proposed "
                f"{proposal.proposal_id} and cannot {verb} it; another ON_CALL_SRE or EMERGENCY_OVERRIDE "
                "principal must"
            )
            audit_id = self._refuse(operation, principal, {**params, "refusal": OWN_PROPOSAL},
                                    SkipReason.INSUFFICIENT_AUTHORITY.value, message)
            raise InsufficientAuthority(message, audit_id)

    def _kill_switch_open(self, principal: Principal, params: dict[str, Any]) -> None:
        operation = OperationType.THRESHOLD_APPROVAL
        try:
            state = self.kill_switch.status()
        except BackendUnavailable as exc:
            mismatch = isinstance(exc, StateMismatch)
            reason = SkipReason.STATE_MISMATCH if mismatch else SkipReason.KILL_SWITCH_UNAVAILABLE
            message = f"{reason}: the kill switch state cannot be read ({exc}); no threshold approval takes effect"
            if not mismatch:  # the kill switch raised the P1 STATE_MISMATCH alert already
                self.on_alert("P1", reason.value, {"operation": operation.value, "error": str(exc)[:2000]})
            raise ApprovalBlocked(message, reason, self._refuse(operation, principal, params, reason.value, message))
        if state.active:
            reason = SkipReason.KILL_SWITCH_ACTIVE
            who = state.disabled_by.principal if state.disabled_by else "unknown"
            message = (
                f"{reason}: kill switch disabled by {who} ({state.reason}); approvals are blocked until it is "
                "enabled again"
            )
            raise ApprovalBlocked(message, reason, self._refuse(operation, principal, params, reason.value, message))

    def _pending(
        self, operation: OperationType, principal: Principal, proposal: ThresholdProposal, params: dict[str, Any]
    ) -> None:
        if proposal.status is ProposalStatus.PENDING:
            return
        message = self._not_pending_message(proposal)
        audit_id = self._refuse(operation, principal, params, NOT_PENDING, message)
        raise ProposalNotPending(message, audit_id, proposal.status.value)

    def _lost(self, record: AuditRecord, latest: ThresholdProposal) -> ProposalNotPending:
        """Complete the RUNNING record of a decision that lost a race as SKIPPED; the error to raise."""
        message = self._not_pending_message(latest)
        self._finish(record, AuditStatus.SKIPPED, {"skip_reason": NOT_PENDING, "message": message})
        return ProposalNotPending(message, record.audit_id, latest.status.value)

    @staticmethod
    def _not_pending_message(proposal: ThresholdProposal) -> str:
        by = f" by {proposal.decided_by.principal}" if proposal.decided_by else ""
        version = f" as version {proposal.version}" if proposal.version else ""
        return f"{NOT_PENDING}: {proposal.proposal_id} was {proposal.status.value.lower()}{by}{version} already"


__all__ = [
    "Approval",
    "ApprovalBlocked",
    "ProposalNotFound",
    "ProposalNotPending",
    "ThresholdReview",
    "check_reason",
    "check_thresholds",
]
