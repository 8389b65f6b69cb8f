"""The dashboard's six rows computed from the audit trail (`opx-learning status`, any backend).

`opx-learning status` adds a seventh section, each sensor's and schedule's last tick
from the heartbeats in the Dagster instance (`opx_learning.defs.monitors`).

Rows 1-4 cover the attempts started in the last `hours`; drift (row 5) lists the
last 12 successful calibrations and row 6 the last 20 operations, whatever their
age, because monthly calibrations rarely fall into a 24-hour window. Error rate =
FAILED / (SUCCESS + FAILED), flagged above 10 %; durations of SUCCESS / FAILED
attempts, p99 interpolated linearly between closest ranks, flagged when the
longest exceeds 5 minutes; |drift| flagged above 0.15.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from opx_learning.alerts.heartbeats import render_rows
from opx_learning.alerts.rules import ELEVATED_ERROR_RATE_LIMIT, TIMEOUT_AFTER
from opx_learning.core.schema import DRIFT_CRITICAL
from opx_learning.core.windows import iso
from opx_learning.safety.audit import AuditLog
from opx_learning.safety.models import (
    LEARNING_OPERATIONS,
    AuditRecord,
    AuditStatus,
    OperationType,
    TriggerType,
)

ERROR_RATE_FLAG = ELEVATED_ERROR_RATE_LIMIT
DURATION_FLAG_MS = int(TIMEOUT_AFTER.total_seconds()) * 1000
DRIFT_FLAG = DRIFT_CRITICAL
RECENT = 20
DRIFT_POINTS = 12


def percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolation percentile (numpy's default) of `values`, q in [0, 100]; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def status_report(records: list[AuditRecord], calibrations: list[AuditRecord], recent: list[AuditRecord],
                  *, now: datetime, hours: float) -> dict[str, Any]:
    """The six rows from records started in the window, successful calibrations and the most recent records."""
    ops = [op.value for op in LEARNING_OPERATIONS]
    counts = {op: {s.value: 0 for s in AuditStatus} for op in ops}
    durations: dict[str, list[float]] = {op: [] for op in ops}
    triggers = {t.value: dict.fromkeys(ops, 0) for t in TriggerType}
    for record in records:
        op = record.operation_type.value
        if op not in counts:
            continue
        counts[op][record.status.value] += 1
        triggers[record.trigger_type.value][op] += 1
        if record.status in (AuditStatus.SUCCESS, AuditStatus.FAILED) and record.duration_ms is not None:
            durations[op].append(float(record.duration_ms))
    error_rates = {}
    for op in ops:
        finished = counts[op]["SUCCESS"] + counts[op]["FAILED"]
        rate = counts[op]["FAILED"] / finished if finished else None
        error_rates[op] = {
            "failed": counts[op]["FAILED"], "finished": finished,
            "error_rate": None if rate is None else round(rate, 4),
            "flag": rate is not None and rate > ERROR_RATE_FLAG,
        }
    duration_rows = {}
    for op in ops:
        values = durations[op]
        duration_rows[op] = {
            "count": len(values),
            "avg_ms": round(sum(values) / len(values), 1) if values else None,
            "p99_ms": None if not values else round(percentile(values, 99), 1),
            "max_ms": max(values) if values else None,
            "flag": bool(values) and max(values) > DURATION_FLAG_MS,
        }
    drift = []
    for record in sorted(calibrations, key=lambda r: r.start_time)[-DRIFT_POINTS:]:
        value = record.results.get("drift")
        worst = record.results.get("max_abs_drift", abs(value) if isinstance(value, (int, float)) else None)
        drift.append({
            "audit_id": record.audit_id,
            "start_time": iso(record.start_time),
            "window": [record.parameters.get("start_date"), record.parameters.get("end_date")],
            "drift": value,
            "max_abs_drift": worst,
            "outcome_count": record.results.get("outcome_count"),
            "skipped_count": record.results.get("skipped_count"),
            "flag": isinstance(worst, (int, float)) and round(abs(worst), 9) > DRIFT_FLAG,
        })
    return {
        "window": {"since": iso(now - timedelta(hours=hours)), "until": iso(now), "hours": hours},
        "counts": counts,
        "error_rates": error_rates,
        "durations": duration_rows,
        "triggers": triggers,
        "drift": drift,
        "recent": [
            {
                "start_time": iso(r.start_time),
                "operation_type": r.operation_type.value,
                "trigger_type": r.trigger_type.value,
                "status": r.status.value,
                "duration_ms": r.duration_ms,
                "audit_id": r.audit_id,
                "reason": r.skip_reason or r.results.get("failure_reason"),
            }
            for r in recent[:RECENT]
        ],
    }


def read_status(audit: AuditLog, *, now: datetime, hours: float = 24) -> dict[str, Any]:
    """`status_report` over an audit store."""
    records = audit.query(since=now - timedelta(hours=hours), until=now)
    calibrations = audit.query(operation_type=OperationType.CALIBRATION, status=AuditStatus.SUCCESS, limit=DRIFT_POINTS)
    return status_report(records, calibrations, audit.query(limit=RECENT), now=now, hours=hours)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1000:.1f}s" if value < 120_000 else f"{value / 60_000:.1f}min"


def render(report: dict[str, Any]) -> str:
    """Human-readable tables of the six rows (`!` marks a value over its runbook threshold)."""
    window = report["window"]
    lines = [f"Learning operations, last {window['hours']:g} h ({window['since']} .. {window['until']})", ""]
    lines.append("1. Success / failure counts")
    lines.append(f"   {'operation':<20}{'SUCCESS':>9}{'FAILED':>8}{'SKIPPED':>9}{'RUNNING':>9}")
    for op, c in report["counts"].items():
        lines.append(f"   {op:<20}{c['SUCCESS']:>9}{c['FAILED']:>8}{c['SKIPPED']:>9}{c['RUNNING']:>9}")
    lines += ["", "2. Error rates (alert > 10 %)"]
    for op, e in report["error_rates"].items():
        mark = "  ! over 10 %" if e["flag"] else ""
        lines.append(f"   {op:<20}{_pct(e['error_rate']):>9}  ({e['failed']}/{e['finished']}){mark}")
    lines += ["", "3. Durations (alert > 5 min)"]
    lines.append(f"   {'operation':<20}{'avg':>9}{'p99':>9}{'max':>9}")
    for op, d in report["durations"].items():
        mark = "  ! over 5 min" if d["flag"] else ""
        lines.append(f"   {op:<20}{_ms(d['avg_ms']):>9}{_ms(d['p99_ms']):>9}{_ms(d['max_ms']):>9}{mark}")
    lines += ["", "4. Trigger types"]
    ops = list(report["counts"])
    lines.append(f"   {'trigger':<12}" + "".join(f"{op:>20}" for op in ops))
    for trigger, row in report["triggers"].items():
        lines.append(f"   {trigger:<12}" + "".join(f"{row[op]:>20}" for op in ops))
    lines += ["", "5. Calibration drift (last successful calibrations; advisory above |0.15|)"]
    if not report["drift"]:
        lines.append("   no successful calibration recorded")
    for d in report["drift"]:
        drift = "-" if d["drift"] is None else f"{d['drift']:+.3f}"
        mark = "  ! |drift| > 0.15" if d["flag"] else ""
        window_text = " .. ".join(str(part) for part in d["window"] if part) or d["start_time"]
        lines.append(
            f"   {window_text:<52} drift {drift:>7}  outcomes {d['outcome_count'] if d['outcome_count'] is not None else '-'}"
            f"  skipped {d['skipped_count'] if d['skipped_count'] is not None else '-'}{mark}"
        )
    lines += ["", f"6. Last {RECENT} operations"]
    lines.append(f"   {'start':<26}{'operation':<21}{'trigger':<11}{'status':<9}{'duration':>9}  audit id")
    for r in report["recent"]:
        reason = f"  ({r['reason']})" if r["reason"] else ""
        lines.append(
            f"   {r['start_time']:<26}{r['operation_type']:<21}{r['trigger_type']:<11}{r['status']:<9}"
            f"{_ms(r['duration_ms']):>9}  {r['audit_id']}{reason}"
        )
    if "monitors" in report:
        title = "7. Sensors and schedules: last tick (stale: no tick for 5 min, a missed cron time, or a cursor"
        lines += ["", f"{title} 10 min behind the audit trail)"]
        lines.append(f"   from {report.get('monitors_source') or '-'}")
        if report["monitors"]:
            lines += render_rows(report["monitors"])
    return "\n".join(lines)
