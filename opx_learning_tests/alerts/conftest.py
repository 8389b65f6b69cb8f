"""Helpers for the alert tests: hand-made audit records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from opx_learning.safety.models import (
    SYSTEM,
    AuditRecord,
    AuditStatus,
    OperationType,
    Principal,
    TriggerType,
)

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
_counter = iter(range(1_000_000))


def record(
    operation: str,
    status: str,
    *,
    started: timedelta,
    duration: timedelta | None = timedelta(seconds=30),
    trigger: str = "SCHEDULED",
    results: dict[str, Any] | None = None,
    principal: Principal = SYSTEM,
    error: str | None = None,
    now: datetime = NOW,
) -> AuditRecord:
    """An audit record that started `started` before `now` (terminal ones last `duration`)."""
    start = now - started
    terminal = status != "RUNNING"
    end = start + duration if terminal and duration is not None else None
    op = OperationType(operation)
    return AuditRecord(
        audit_id=f"{operation}#{next(_counter):032x}",
        operation_type=op,
        trigger_type=TriggerType(trigger),
        status=AuditStatus(status),
        start_time=start,
        end_time=end,
        duration_ms=round((end - start).total_seconds() * 1000) if end else None,
        triggered_by=principal if trigger != "SCHEDULED" else SYSTEM,
        results=dict(results or {}),
        error_message=error,
        run_id=f"run-{next(_counter)}",
        version=2 if terminal else 1,
    )
