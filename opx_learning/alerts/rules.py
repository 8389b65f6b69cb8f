"""The alert rules (docs/design.md#alerts) as pure functions over audit records (no I/O, no clock of their own).

| rule | alarm | severity |
|---|---|---|
| a CALIBRATION attempt FAILED (any reason) | CALIBRATION_FAILURE | P0 |
| >= 3 consecutive FAILED attempts of one operation | CONSECUTIVE_FAILURES | P0 |
| PATTERN_EXTRACTION / SNAPSHOT: 2 consecutive FAILED | REPEATED_FAILURE | P1 |
| error rate > 20 % over the last hour (per operation) | HIGH_ERROR_RATE | P1 |
| error rate > 10 % and <= 20 % over the last hour | ELEVATED_ERROR_RATE | P2 |
| single FAILED PATTERN_EXTRACTION / SNAPSHOT | OPERATION_FAILURE | P2 |
| running (or ran) longer than 5 minutes | TIMEOUT | P2 |
| |drift| > 0.15 in a sufficient band of a successful calibration | DRIFT (ADVISORY_ONLY) | P3 |
| kill switch disabled / enabled | KILL_SWITCH_DISABLED / _ENABLED | INFO |

"Consecutive" counts the most recent SUCCESS/FAILED attempts of one operation type
(SKIPPED and RUNNING records are ignored) back from a FAILED record to the first
SUCCESS. Every failed attempt raises one failure alert, the most severe of the
failure rows that applies (CALIBRATION_FAILURE for calibrations, carrying the
consecutive count), even when several fail between two evaluations. The error
rate is a separate condition: the error rate is FAILED / (SUCCESS + FAILED) of
the attempts started in the last hour, per learning operation type, and its
alert is keyed by the newest failure in that hour, so it pages again only when
a new failure keeps the rate over the threshold. KILL_SWITCH_UNAVAILABLE (P1)
has no rule here: the guard raises it through its alert hook when it fails closed.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from opx_learning.alerts.models import (
    CALIBRATION_FAILURE,
    CONSECUTIVE_FAILURES,
    DRIFT,
    ELEVATED_ERROR_RATE,
    HIGH_ERROR_RATE,
    KILL_SWITCH_DISABLED,
    KILL_SWITCH_ENABLED,
    OPERATION_FAILURE,
    REPEATED_FAILURE,
    SEVERITIES,
    TIMEOUT,
    Alert,
)
from opx_learning.core.schema import (
    DRIFT_CRITICAL,
    ERROR_RATE_ELEVATED,
    ERROR_RATE_HIGH,
)
from opx_learning.safety.models import (
    LEARNING_OPERATIONS,
    AuditRecord,
    AuditStatus,
    OperationType,
)

TIMEOUT_AFTER = timedelta(minutes=5)
ERROR_RATE_WINDOW = timedelta(hours=1)
HIGH_ERROR_RATE_LIMIT = ERROR_RATE_HIGH
ELEVATED_ERROR_RATE_LIMIT = ERROR_RATE_ELEVATED
DRIFT_LIMIT = DRIFT_CRITICAL
CONSECUTIVE_P0 = 3
_FINISHED = (AuditStatus.SUCCESS, AuditStatus.FAILED)
_KILL_SWITCH_ALARMS = {
    OperationType.KILL_SWITCH_DISABLE: KILL_SWITCH_DISABLED,
    OperationType.KILL_SWITCH_ENABLE: KILL_SWITCH_ENABLED,
}


def _order(record: AuditRecord) -> tuple[datetime, datetime, str]:
    return (record.start_time, record.end_time or record.start_time, record.audit_id)


def _base(record: AuditRecord) -> dict[str, Any]:
    return {
        "trigger_type": record.trigger_type.value,
        "start_time": record.start_time.isoformat(),
        "parameters": record.parameters,
        "principal": record.triggered_by.principal,
    }


def failed_streak(record: AuditRecord, history: Iterable[AuditRecord]) -> list[AuditRecord]:
    """The consecutive FAILED attempts of `record`'s operation ending at `record`, newest first (SKIPPED/RUNNING ignored)."""
    if record.status is not AuditStatus.FAILED:
        return []
    attempts = {r.audit_id: r for r in history if r.operation_type is record.operation_type and r.status in _FINISHED}
    attempts[record.audit_id] = record
    earlier = sorted((r for r in attempts.values() if _order(r) <= _order(record)), key=_order, reverse=True)
    streak = []
    for attempt in earlier:
        if attempt.status is not AuditStatus.FAILED:
            break
        streak.append(attempt)
    return streak


def failure_alert(record: AuditRecord, history: Iterable[AuditRecord] = ()) -> Alert | None:
    """The alert for one FAILED learning attempt (P0 calibration / P0 three in a row / P1 two / P2 one), else None."""
    if record.status is not AuditStatus.FAILED or record.operation_type not in LEARNING_OPERATIONS:
        return None
    streak = failed_streak(record, history)
    count = len(streak)
    if record.operation_type is OperationType.CALIBRATION:
        alarm, severity = CALIBRATION_FAILURE, "P0"
    elif count >= CONSECUTIVE_P0:
        alarm, severity = CONSECUTIVE_FAILURES, "P0"
    elif count == 2:
        alarm, severity = REPEATED_FAILURE, "P1"
    else:
        alarm, severity = OPERATION_FAILURE, "P2"
    details = {
        **_base(record),
        "consecutive_failures": count,
        "failed_audit_ids": [r.audit_id for r in streak[:10]],
        "failure_reason": record.results.get("failure_reason"),
        "error_message": record.error_message,
        "duration_ms": record.duration_ms,
    }
    return Alert(
        alarm, severity, record.operation_type.value, details,
        audit_id=record.audit_id, run_id=record.run_id, trigger_type=record.trigger_type.value,
    )


def error_rate_alerts(records: Iterable[AuditRecord], now: datetime, window: timedelta = ERROR_RATE_WINDOW) -> list[Alert]:
    """Per learning operation: P1 when FAILED / (SUCCESS + FAILED) of attempts started in `[now - window, now)` > 20 %, P2 when > 10 %."""
    alerts = []
    recent = [r for r in records if now - window <= r.start_time < now and r.status in _FINISHED]
    for operation in LEARNING_OPERATIONS:
        mine = [r for r in recent if r.operation_type is operation]
        failures = sorted((r for r in mine if r.status is AuditStatus.FAILED), key=_order)
        if not failures:
            continue
        rate = len(failures) / len(mine)
        if rate > HIGH_ERROR_RATE_LIMIT:
            alarm, severity, limit = HIGH_ERROR_RATE, "P1", HIGH_ERROR_RATE_LIMIT
        elif rate > ELEVATED_ERROR_RATE_LIMIT:
            alarm, severity, limit = ELEVATED_ERROR_RATE, "P2", ELEVATED_ERROR_RATE_LIMIT
        else:
            continue
        newest = failures[-1]
        details = {
            "error_rate": round(rate, 4),
            "failed": len(failures),
            "attempts": len(mine),
            "threshold": limit,
            "window_minutes": int(window.total_seconds() // 60),
            "newest_failure": newest.audit_id,
        }
        alerts.append(Alert(alarm, severity, operation.value, details, audit_id=newest.audit_id, run_id=newest.run_id))
    return alerts


def timeout_alert(record: AuditRecord, now: datetime, limit: timedelta = TIMEOUT_AFTER) -> Alert | None:
    """P2 TIMEOUT when a learning attempt has been RUNNING, or ran, longer than `limit`."""
    if record.operation_type not in LEARNING_OPERATIONS:
        return None
    if record.status is AuditStatus.RUNNING:
        elapsed_ms = max(0, round((now - record.start_time).total_seconds() * 1000))
    elif record.status in _FINISHED and record.duration_ms is not None:
        elapsed_ms = record.duration_ms
    else:
        return None
    limit_ms = round(limit.total_seconds() * 1000)
    if elapsed_ms <= limit_ms:
        return None
    details = {**_base(record), "status": record.status.value, "elapsed_ms": elapsed_ms, "limit_ms": limit_ms}
    return Alert(
        TIMEOUT, "P2", record.operation_type.value, details,
        audit_id=record.audit_id, run_id=record.run_id, trigger_type=record.trigger_type.value,
    )


def drifted_bands(results: dict[str, Any], limit: float = DRIFT_LIMIT) -> list[dict[str, Any]]:
    """Sufficient bands with |drift| > `limit` from calibration results (`bands` when present, else `max_abs_drift`/`drift`)."""
    bands = results.get("bands")
    if isinstance(bands, list) and bands:
        return [
            {"band": b.get("band"), "drift": b.get("drift"), "n": b.get("n")}
            for b in bands
            if isinstance(b, dict) and b.get("sufficient") and b.get("drift") is not None
            and round(abs(float(b["drift"])), 9) > limit
        ]
    worst = results.get("max_abs_drift")
    if worst is None or round(abs(float(worst)), 9) <= limit:
        return []
    return [{"band": results.get("drift_band"), "drift": results.get("drift", worst)}]


def drift_alert(record: AuditRecord, limit: float = DRIFT_LIMIT) -> Alert | None:
    """P3 advisory DRIFT for a successful CALIBRATION whose results show |drift| > `limit` in a sufficient band."""
    if record.operation_type is not OperationType.CALIBRATION or record.status is not AuditStatus.SUCCESS:
        return None
    bands = drifted_bands(record.results, limit)
    if not bands:
        return None
    details = {
        **_base(record),
        "drift": record.results.get("drift"),
        "max_abs_drift": record.results.get("max_abs_drift"),
        "bands": bands,
        "threshold": limit,
        "outcome_count": record.results.get("outcome_count"),
        "calibration_ids": record.results.get("calibration_ids"),
        "note": "advisory only: review the band recommendations; nothing is changed automatically",
    }
    return Alert(
        DRIFT, "P3", record.operation_type.value, details,
        audit_id=record.audit_id, run_id=record.run_id, trigger_type=record.trigger_type.value,
    )


def kill_switch_alert(record: AuditRecord) -> Alert | None:
    """INFO for an accepted kill-switch change (same dedup id as the guard hook's alert for it)."""
    alarm = _KILL_SWITCH_ALARMS.get(record.operation_type)
    if alarm is None or record.status is not AuditStatus.SUCCESS:
        return None
    details = {
        "audit_id": record.audit_id,
        "principal": record.triggered_by.principal,
        "reason": record.parameters.get("reason"),
        "state": record.results.get("state"),
    }
    return Alert(alarm, "INFO", record.operation_type.value, details, audit_id=record.audit_id)


def evaluate(records: Iterable[AuditRecord], *, history: Iterable[AuditRecord] = (), now: datetime) -> list[Alert]:
    """Every alert that `records` (new or changed since the last evaluation) raise, given `history` as context.

    Args:
        records: records to judge (completed since the last evaluation, and RUNNING ones for timeouts).
        history: earlier records for consecutive failures and error rates (the last hour and
            the recent attempts of each failing operation are enough).
        now: evaluation time.

    Returns:
        Alerts ordered by severity (P0 first), then operation; duplicates (same dedup id) removed.
    """
    fresh = {r.audit_id: r for r in records}
    everything = {r.audit_id: r for r in history} | fresh
    alerts: list[Alert] = []
    for record in fresh.values():
        for rule in (drift_alert, kill_switch_alert):
            alert = rule(record)
            if alert is not None:
                alerts.append(alert)
        alert = timeout_alert(record, now)
        if alert is not None:
            alerts.append(alert)
    for record in fresh.values():
        alert = failure_alert(record, everything.values())
        if alert is not None:
            alerts.append(alert)
    alerts.extend(error_rate_alerts(everything.values(), now))
    unique = {alert.dedup_id: alert for alert in alerts}
    return sorted(unique.values(), key=lambda a: (SEVERITIES.index(a.severity), a.operation, a.alarm))
