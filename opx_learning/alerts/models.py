"""The alert value type: severity, alarm, the SNS message it becomes and its deduplication id."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from opx_learning.core.windows import iso
from opx_learning.safety.audit import utcnow

SEVERITIES = ("P0", "P1", "P2", "P3", "INFO")

CALIBRATION_FAILURE = "CALIBRATION_FAILURE"
CONSECUTIVE_FAILURES = "CONSECUTIVE_FAILURES"
REPEATED_FAILURE = "REPEATED_FAILURE"
OPERATION_FAILURE = "OPERATION_FAILURE"
HIGH_ERROR_RATE = "HIGH_ERROR_RATE"
ELEVATED_ERROR_RATE = "ELEVATED_ERROR_RATE"
TIMEOUT = "TIMEOUT"
DRIFT = "DRIFT"
KILL_SWITCH_DISABLED = "KILL_SWITCH_DISABLED"
KILL_SWITCH_ENABLED = "KILL_SWITCH_ENABLED"
KILL_SWITCH_UNAVAILABLE = "KILL_SWITCH_UNAVAILABLE"
DATA_CORRUPTION = "DATA_CORRUPTION"
AUDIT_TAMPERED = "AUDIT_TAMPERED"
STATE_MISMATCH = "STATE_MISMATCH"
MORNING_CHECKLIST = "MORNING_CHECKLIST"

ADVISORY_ONLY = "ADVISORY_ONLY"
INVESTIGATE = "INVESTIGATE"
NO_ACTION = "NONE"

# Alerts raised without an audit id or run id are deduplicated per 5-minute bucket.
DEDUP_BUCKET = timedelta(minutes=5)


def _bucket(at: datetime) -> str:
    seconds = int(DEDUP_BUCKET.total_seconds())
    return str(int(at.timestamp()) // seconds * seconds)


@dataclass(frozen=True)
class Alert:
    """One alert: what fired (`alarm`), how bad (`severity`), about which operation and attempt.

    `key` overrides what identifies the alarm's occurrence in the deduplication id
    (default: the audit id, else the run id, else the 5-minute bucket of `raised_at`).
    """

    alarm: str
    severity: str
    operation: str
    details: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    audit_id: str | None = None
    run_id: str | None = None
    trigger_type: str | None = None
    raised_at: datetime = field(default_factory=utcnow, compare=False)
    key: str | None = None

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity: {self.severity!r} is not one of {', '.join(SEVERITIES)}")

    @property
    def occurrence(self) -> str:
        """What makes two evaluations the same occurrence of this alarm (hashed into `dedup_id`)."""
        return self.key or self.audit_id or self.run_id or f"at:{_bucket(self.raised_at)}"

    @property
    def dedup_id(self) -> str:
        """SHA-256 hex of alarm, operation and occurrence: stable across re-evaluations (SNS `MessageDeduplicationId`)."""
        return hashlib.sha256(f"{self.alarm}|{self.operation}|{self.occurrence}".encode()).hexdigest()

    @property
    def action(self) -> str:
        """`ADVISORY_ONLY` for drift (nothing changes automatically), `NONE` for INFO, else `INVESTIGATE`."""
        if self.alarm == DRIFT:
            return ADVISORY_ONLY
        if self.alarm == MORNING_CHECKLIST and self.details.get("status") == "PASS":
            return NO_ACTION  # the all-pass digest is a heartbeat
        return NO_ACTION if self.severity == "INFO" else INVESTIGATE

    @property
    def subject(self) -> str:
        """SNS subject (at most 100 characters, one line)."""
        text = f"[{self.severity}] opx-learning {self.alarm}: {self.operation}"
        return text.replace("\n", " ")[:100]

    @property
    def group_id(self) -> str:
        """SNS FIFO `MessageGroupId`: one ordered group per operation type."""
        return self.operation or "NONE"

    def body(self) -> dict[str, Any]:
        """The JSON message body (fields in docs/alerts.md)."""
        return {
            "alarm": self.alarm,
            "severity": self.severity,
            "operation": self.operation,
            "audit_id": self.audit_id,
            "run_id": self.run_id,
            "trigger_type": self.trigger_type,
            "details": self.details,
            "action": self.action,
            "raised_at": iso(self.raised_at),
        }

    def to_dict(self) -> dict[str, Any]:
        """The body plus subject and deduplication id (one line of the local alerts file)."""
        return {**self.body(), "subject": self.subject, "dedup_id": self.dedup_id}

    def message(self) -> str:
        """The body serialized as SNS sends it."""
        return json.dumps(self.body(), default=str, sort_keys=True)
