"""Value types of the safety layer: enums, principals, audit records, kill-switch state."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, Self

from opx_learning.core.windows import iso, to_utc

MAX_ERROR_CHARS = 2000

AlertHook = Callable[[str, str, dict], None]
"""`on_alert(severity, alarm, details)`: receives P0-P3 / INFO alerts raised by the safety layer."""

_log = logging.getLogger("opx_learning.safety")


def log_alert(severity: str, alarm: str, details: dict) -> None:
    """Default alert hook: write the alert to the log (the alerts layer replaces it)."""
    level = logging.INFO if severity == "INFO" else logging.ERROR
    _log.log(level, "alert %s %s %s", severity, alarm, json.dumps(details, default=str, sort_keys=True))


class SafetyError(Exception):
    """Base class of the safety layer's errors."""


class BackendUnavailable(SafetyError):
    """The state store (SQLite file or DynamoDB) cannot be read or written."""


class KillSwitchUnavailable(BackendUnavailable):
    """The kill-switch state cannot be read; callers fail closed."""


class AuditNotFound(SafetyError, KeyError):
    """No audit record has the requested id."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "audit record not found"


class AuditTransitionError(SafetyError):
    """A status change other than RUNNING -> one terminal status was attempted."""


class InsufficientAuthority(SafetyError):
    """The principal lacks the authority the action requires (already audited)."""

    def __init__(self, message: str, audit_id: str | None = None) -> None:
        super().__init__(message)
        self.audit_id = audit_id


class InvalidRequest(SafetyError, ValueError):
    """A caller passed a value the safety layer cannot accept; the message names field and value."""


def _parse_enum(enum: type[StrEnum], value: Any, field_name: str) -> Any:
    if isinstance(value, enum):
        return value
    text = str(value).strip().upper().replace("-", "_") if value is not None else ""
    try:
        return enum(text)
    except ValueError:
        allowed = ", ".join(member.value for member in enum)
        raise InvalidRequest(f"{field_name}: {value!r} is not one of {allowed}") from None


class _ParsedEnum(StrEnum):
    """A StrEnum read from its name: case-insensitive, `-` for `_`."""

    @classmethod
    def parse(cls, value: Any, field_name: str | None = None) -> Self:
        """The member named by `value`.

        Raises:
            InvalidRequest: unknown name (the message names the field and the allowed values).
        """
        return _parse_enum(cls, value, field_name or _FIELD_NAMES[cls.__name__])


_FIELD_NAMES = {'OperationType': 'operation_type', 'TriggerType': 'trigger_type', 'AuditStatus': 'status', 'AuthorityType': 'authority'}


class OperationType(_ParsedEnum):
    """Audited operation types."""

    PATTERN_EXTRACTION = "PATTERN_EXTRACTION"
    CALIBRATION = "CALIBRATION"
    SNAPSHOT = "SNAPSHOT"
    KILL_SWITCH_DISABLE = "KILL_SWITCH_DISABLE"
    KILL_SWITCH_ENABLE = "KILL_SWITCH_ENABLE"
    THRESHOLD_PROPOSAL = "THRESHOLD_PROPOSAL"
    THRESHOLD_APPROVAL = "THRESHOLD_APPROVAL"
    THRESHOLD_REJECTION = "THRESHOLD_REJECTION"

    @property
    def is_learning(self) -> bool:
        """Whether this is a learning operation (guarded, rate limited) rather than a kill-switch change."""
        return self in LEARNING_OPERATIONS


LEARNING_OPERATIONS = (OperationType.PATTERN_EXTRACTION, OperationType.CALIBRATION, OperationType.SNAPSHOT)


class TriggerType(_ParsedEnum):
    """How an operation was started."""

    SCHEDULED = "SCHEDULED"
    MANUAL = "MANUAL"
    BACKFILL = "BACKFILL"
    AUTOMATION = "AUTOMATION"


class AuditStatus(_ParsedEnum):
    """Status of an audit record; RUNNING moves to exactly one terminal status."""

    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"

    @property
    def terminal(self) -> bool:
        """Whether no further change is allowed."""
        return self is not AuditStatus.RUNNING


class AuthorityType(_ParsedEnum):
    """Authority levels; SYSTEM is reserved for scheduled and automation runs."""

    SYSTEM = "SYSTEM"
    HUMAN_OPERATOR = "HUMAN_OPERATOR"
    ON_CALL_SRE = "ON_CALL_SRE"
    EMERGENCY_OVERRIDE = "EMERGENCY_OVERRIDE"


class SkipReason(StrEnum):
    """Why an operation did not run (stored as `results.skip_reason`), or why it failed without an exception."""

    KILL_SWITCH_ACTIVE = "KILL_SWITCH_ACTIVE"
    KILL_SWITCH_UNAVAILABLE = "KILL_SWITCH_UNAVAILABLE"
    MAINTENANCE_WINDOW = "MAINTENANCE_WINDOW"
    RATE_LIMIT_EXCEEDED = "RATE_LIMIT_EXCEEDED"
    INSUFFICIENT_AUTHORITY = "INSUFFICIENT_AUTHORITY"
    STATE_UNAVAILABLE = "STATE_UNAVAILABLE"
    STATE_MISMATCH = "STATE_MISMATCH"
    RUN_TERMINATED = "RUN_TERMINATED"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller and the authority the trusted principals file grants it."""

    principal: str
    authority: AuthorityType = AuthorityType.HUMAN_OPERATOR

    def __post_init__(self) -> None:
        if not isinstance(self.principal, str) or not self.principal.strip():
            raise InvalidRequest(f"principal: {self.principal!r} must be a non-empty string")
        object.__setattr__(self, "authority", AuthorityType.parse(self.authority))

    def to_dict(self) -> dict[str, str]:
        """The audit record's `triggered_by` form: `{type, principal}`."""
        return {"type": self.authority.value, "principal": self.principal}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Principal:
        """Inverse of `to_dict`."""
        return cls(str(data["principal"]), AuthorityType.parse(data["type"]))


SYSTEM = Principal("system", AuthorityType.SYSTEM)
AUTOMATION = Principal("automation", AuthorityType.SYSTEM)
"""The principal of runs the late-outcomes automation sensor launches (trigger type AUTOMATION)."""
# Trigger types a SYSTEM principal may use, and that maintenance windows hold back.
UNATTENDED = (TriggerType.SCHEDULED, TriggerType.AUTOMATION)


def truncate_error(message: str | None) -> str | None:
    """Limit an error message to the 2000 characters an audit record keeps."""
    if message is None:
        return None
    text = str(message)
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def json_safe(value: Any) -> Any:
    """Round-trip a parameters/results value through JSON (datetimes as ISO strings)."""

    def default(obj: Any) -> Any:
        if isinstance(obj, datetime):
            return iso(to_utc(obj))
        if hasattr(obj, "isoformat"):
            return obj.isoformat()
        if isinstance(obj, (set, frozenset, tuple)):
            return list(obj)
        return str(obj)

    return json.loads(json.dumps(value if value is not None else {}, default=default))


@dataclass(frozen=True)
class AuditRecord:
    """One operation attempt (docs/design.md#audit-trail); `version` counts writes (1 when created, 2 once completed)."""

    audit_id: str
    operation_type: OperationType
    trigger_type: TriggerType
    status: AuditStatus
    start_time: datetime
    triggered_by: Principal
    parameters: dict[str, Any] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    end_time: datetime | None = None
    duration_ms: int | None = None
    error_message: str | None = None
    run_id: str | None = None
    version: int = 1

    @property
    def skip_reason(self) -> str | None:
        """The recorded skip (or refusal) reason, if any."""
        return self.results.get("skip_reason")

    def completed(
        self,
        status: AuditStatus,
        end_time: datetime,
        results: dict[str, Any] | None = None,
        error_message: str | None = None,
    ) -> AuditRecord:
        """The terminal version of this record."""
        status = AuditStatus.parse(status)
        if not status.terminal:
            raise AuditTransitionError(f"status: {status} is not a terminal status")
        merged = {**self.results, **json_safe(results or {})}
        return replace(
            self,
            status=status,
            end_time=end_time,
            duration_ms=max(0, round((end_time - self.start_time).total_seconds() * 1000)),
            results=merged,
            error_message=truncate_error(error_message),
            version=self.version + 1,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict with the audit trail's field names."""
        return {
            "audit_id": self.audit_id,
            "operation_type": self.operation_type.value,
            "trigger_type": self.trigger_type.value,
            "status": self.status.value,
            "start_time": iso(self.start_time),
            "end_time": iso(self.end_time) if self.end_time else None,
            "duration_ms": self.duration_ms,
            "parameters": self.parameters,
            "results": self.results,
            "error_message": self.error_message,
            "triggered_by": self.triggered_by.to_dict(),
            "run_id": self.run_id,
            "version": self.version,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AuditRecord:
        """Inverse of `to_dict`."""
        return cls(
            audit_id=data["audit_id"],
            operation_type=OperationType.parse(data["operation_type"]),
            trigger_type=TriggerType.parse(data["trigger_type"]),
            status=AuditStatus.parse(data["status"]),
            start_time=to_utc(data["start_time"], "start_time"),
            end_time=to_utc(data["end_time"], "end_time") if data.get("end_time") else None,
            duration_ms=None if data.get("duration_ms") is None else int(data["duration_ms"]),
            parameters=dict(data.get("parameters") or {}),
            results=dict(data.get("results") or {}),
            error_message=data.get("error_message"),
            triggered_by=Principal.from_dict(data["triggered_by"]),
            run_id=data.get("run_id"),
            version=int(data.get("version", 1)),
        )


@dataclass(frozen=True)
class KillSwitchState:
    """Kill-switch state; no stored state means enabled (operations allowed).

    `until` is set by a planned disable (`--until`): once it has passed, the next
    read re-enables the switch as SYSTEM. `version` increments on every write and
    guards concurrent changes.
    """

    enabled: bool = True
    disabled_at: datetime | None = None
    disabled_by: Principal | None = None
    reason: str | None = None
    last_modified: datetime | None = None
    until: datetime | None = None
    version: int = 0

    @property
    def active(self) -> bool:
        """The kill switch is active (operations blocked) when not enabled."""
        return not self.enabled

    def to_rest(self) -> dict[str, Any]:
        """The REST / CLI `--json` status body; `until` appears only for a planned window."""
        body: dict[str, Any] = {
            "active": self.active,
            "enabled": self.enabled,
            "disabledAt": iso(self.disabled_at) if self.disabled_at else None,
            "disabledBy": (
                {"type": self.disabled_by.authority.value, "identifier": self.disabled_by.principal}
                if self.disabled_by
                else None
            ),
            "reason": self.reason,
            "lastModified": iso(self.last_modified) if self.last_modified else None,
        }
        if self.until is not None:
            body["until"] = iso(self.until)
        return body

    def to_dict(self) -> dict[str, Any]:
        """Storage form (snake_case, ISO instants)."""
        return {
            "enabled": self.enabled,
            "disabled_at": iso(self.disabled_at) if self.disabled_at else None,
            "disabled_by": self.disabled_by.to_dict() if self.disabled_by else None,
            "reason": self.reason,
            "last_modified": iso(self.last_modified) if self.last_modified else None,
            "until": iso(self.until) if self.until else None,
            "version": self.version,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KillSwitchState:
        """Inverse of `to_dict`; raises on malformed data (callers treat that as unreadable)."""
        enabled = data["enabled"]
        if not isinstance(enabled, bool):
            raise TypeError(f"enabled: {enabled!r} is not a boolean")

        def instant(name: str) -> datetime | None:
            return to_utc(data[name], name) if data.get(name) else None

        return cls(
            enabled=enabled,
            disabled_at=instant("disabled_at"),
            disabled_by=Principal.from_dict(data["disabled_by"]) if data.get("disabled_by") else None,
            reason=data.get("reason"),
            last_modified=instant("last_modified"),
            until=instant("until"),
            version=int(data.get("version", 0)),
        )


@dataclass(frozen=True)
class RateLimitDecision:
    """Outcome of one rate-limit request."""

    allowed: bool
    operation_type: OperationType
    principal: str
    limit: int
    remaining: int
    retry_after: int
    window_seconds: int = 3600

    @property
    def error(self) -> str | None:
        """`RATE_LIMIT_EXCEEDED` on refusal, else None."""
        return None if self.allowed else SkipReason.RATE_LIMIT_EXCEEDED.value

    @property
    def message(self) -> str:
        """Human-readable summary (the REST 429 message on refusal)."""
        if self.allowed:
            return f"{self.remaining} of {self.limit} {self.operation_type} requests left this hour."
        return f"Rate limit exceeded. Retry after {self.retry_after} seconds."

    def headers(self) -> dict[str, str]:
        """`X-RateLimit-*` headers, plus `Retry-After` on refusal."""
        headers = {"X-RateLimit-Limit": str(self.limit), "X-RateLimit-Remaining": str(self.remaining)}
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after)
        return headers

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (stored in refused audit records)."""
        return {
            "allowed": self.allowed,
            "error": self.error,
            "limit": self.limit,
            "remaining": self.remaining,
            "retry_after": self.retry_after,
            "window_seconds": self.window_seconds,
        }
