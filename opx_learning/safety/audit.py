"""Append-only audit trail (docs/design.md#audit-trail): the abstract store shared by the SQLite and DynamoDB backends."""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from opx_learning.core.windows import Instant, to_utc, to_utc_end
from opx_learning.safety.models import (
    AuditNotFound,
    AuditRecord,
    AuditStatus,
    AuditTransitionError,
    InvalidRequest,
    OperationType,
    Principal,
    SkipReason,
    TriggerType,
    json_safe,
    truncate_error,
)

DEFAULT_LIMIT = 20


def utcnow() -> datetime:
    """Current UTC time truncated to milliseconds (the precision audit instants are stored with)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def new_audit_id(operation_type: OperationType | str) -> str:
    """A unique audit id, `"{OPERATION}#{hex}"`."""
    return f"{OperationType.parse(operation_type).value}#{uuid.uuid4().hex}"


def new_record(
    operation_type: OperationType | str,
    trigger_type: TriggerType | str,
    principal: Principal,
    *,
    parameters: dict[str, Any] | None = None,
    run_id: str | None = None,
    start_time: datetime | None = None,
) -> AuditRecord:
    """A fresh RUNNING record with a new id."""
    operation = OperationType.parse(operation_type)
    return AuditRecord(
        audit_id=new_audit_id(operation),
        operation_type=operation,
        trigger_type=TriggerType.parse(trigger_type),
        status=AuditStatus.RUNNING,
        start_time=start_time or utcnow(),
        triggered_by=principal,
        parameters=json_safe(parameters or {}),
        run_id=run_id,
    )


def _bound(value: Instant | None, field: str) -> datetime | None:
    if value is None:
        return None
    try:
        return to_utc_end(value, field) if field == "until" else to_utc(value, field)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None


class AuditLog(ABC):
    """Append-only audit store: records are created, completed once, read; never deleted.

    Backends implement `append`, `get`, `query` and `_update_running`; every status
    rule is enforced by the store's conditional write, so two completions of one
    record cannot both succeed even from different processes.
    """

    @abstractmethod
    def append(self, record: AuditRecord) -> AuditRecord:
        """Store a new record (RUNNING, or already terminal for a refusal decided up front).

        Raises:
            AuditTransitionError: a record with this id already exists.
            BackendUnavailable: the store cannot be written.
        """

    @abstractmethod
    def get(self, audit_id: str) -> AuditRecord | None:
        """The record with this id, or None."""

    @abstractmethod
    def query(
        self,
        *,
        operation_type: OperationType | None = None,
        status: AuditStatus | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
    ) -> list[AuditRecord]:
        """Records filtered by type, status and `since <= start_time < until`, newest first."""

    @abstractmethod
    def _update_running(self, record: AuditRecord, expected_version: int) -> bool:
        """Replace a stored record iff it is still RUNNING at `expected_version`; False otherwise."""

    def start(
        self,
        operation_type: OperationType | str,
        trigger_type: TriggerType | str,
        principal: Principal,
        *,
        parameters: dict[str, Any] | None = None,
        run_id: str | None = None,
    ) -> AuditRecord:
        """Write and return a new RUNNING record."""
        return self.append(new_record(operation_type, trigger_type, principal, parameters=parameters, run_id=run_id))

    def complete(
        self,
        audit_id: str,
        status: AuditStatus | str,
        *,
        results: dict[str, Any] | None = None,
        error_message: str | None = None,
        end_time: datetime | None = None,
    ) -> AuditRecord:
        """Move a RUNNING record to its one terminal status (SUCCESS, FAILED or SKIPPED).

        Raises:
            AuditNotFound: no such record.
            AuditTransitionError: the record is already terminal, or `status` is not terminal.
        """
        status = AuditStatus.parse(status)
        if not status.terminal:
            raise AuditTransitionError(f"status: {status} is not a terminal status (SUCCESS, FAILED, SKIPPED)")
        current = self._require_running(audit_id)
        finished = current.completed(status, end_time or utcnow(), results, error_message)
        if not self._update_running(finished, current.version):
            self._require_running(audit_id)
            raise AuditTransitionError(f"audit record {audit_id} changed concurrently; not completed twice")
        return finished

    def attach_run(self, audit_id: str, run_id: str) -> AuditRecord:
        """Record the Dagster run id on a RUNNING record (e.g. a manual trigger adopted by its run)."""
        current = self._require_running(audit_id)
        if current.run_id == run_id:
            return current
        updated = replace(current, run_id=run_id, version=current.version + 1)
        if not self._update_running(updated, current.version):
            self._require_running(audit_id)
            raise AuditTransitionError(f"audit record {audit_id} changed concurrently")
        return updated

    def _require_running(self, audit_id: str) -> AuditRecord:
        record = self.get(audit_id)
        if record is None:
            raise AuditNotFound(f"audit_id: no audit record {audit_id!r}")
        if record.status.terminal:
            raise AuditTransitionError(
                f"audit record {audit_id} is already {record.status}; a terminal record cannot change"
            )
        return record

    def by_operation(
        self,
        operation_type: OperationType | str,
        since: Instant | None = None,
        until: Instant | None = None,
        *,
        limit: int | None = None,
    ) -> list[AuditRecord]:
        """Records of one operation type started in `[since, until)`, newest first.

        Raises:
            InvalidRequest: unknown operation type, unreadable bound or `until <= since`.
        """
        return self.search(operation_type=operation_type, since=since, until=until, limit=limit)

    def recent(self, n: int = DEFAULT_LIMIT) -> list[AuditRecord]:
        """The `n` most recently started records."""
        return self.search(limit=n)

    def by_status(self, status: AuditStatus | str, *, limit: int | None = None) -> list[AuditRecord]:
        """Records with this status, newest first."""
        return self.search(status=status, limit=limit)

    def search(
        self,
        *,
        operation_type: OperationType | str | None = None,
        status: AuditStatus | str | None = None,
        since: Instant | None = None,
        until: Instant | None = None,
        limit: int | None = DEFAULT_LIMIT,
    ) -> list[AuditRecord]:
        """Validated front door of `query` (what the CLI and REST call).

        Raises:
            InvalidRequest: unknown operation type or status, unreadable bound, `until <= since`, limit < 1.
        """
        operation = OperationType.parse(operation_type, "operation") if operation_type is not None else None
        wanted = AuditStatus.parse(status) if status is not None else None
        start, end = _bound(since, "since"), _bound(until, "until")
        if start is not None and end is not None and end <= start:
            raise InvalidRequest(f"until: {until!s} must be after since {since!s}")
        if limit is not None and limit < 1:
            raise InvalidRequest(f"limit: {limit} must be at least 1")
        return self.query(operation_type=operation, status=wanted, since=start, until=end, limit=limit)

    def complete_stale(
        self,
        is_alive: Callable[[AuditRecord], bool],
        *,
        older_than: timedelta = timedelta(minutes=2),
        now: datetime | None = None,
    ) -> list[AuditRecord]:
        """Complete RUNNING records whose run is gone as FAILED with reason RUN_TERMINATED.

        Args:
            is_alive: tells whether the record's run (by `record.run_id`) still runs.
            older_than: records younger than this are left alone (their run may not be visible yet).
            now: reference time (default: now).

        Returns:
            The records that were completed by this call.
        """
        cutoff = (now or utcnow()) - older_than
        completed: list[AuditRecord] = []
        for record in self.query(status=AuditStatus.RUNNING, until=cutoff):
            if is_alive(record):
                continue
            try:
                completed.append(
                    self.complete(
                        record.audit_id,
                        AuditStatus.FAILED,
                        results={"failure_reason": SkipReason.RUN_TERMINATED.value},
                        error_message=truncate_error(
                            f"{SkipReason.RUN_TERMINATED}: run {record.run_id or '(none)'} ended without "
                            "completing this audit record"
                        ),
                        end_time=now,
                    )
                )
            except AuditTransitionError:
                continue
        return completed
