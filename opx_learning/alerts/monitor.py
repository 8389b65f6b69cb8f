"""One evaluation of the alert rules over the audit trail (what the alert sensor runs every minute).

The cursor (JSON) holds `since` (the last evaluation time), the ids of records that
were RUNNING then (re-read so a long run's completion is judged) and the short
dedup ids already delivered with their time (kept 25 hours). Each tick reads the
records started since `since` minus a 5-minute overlap (a record written just
before the previous tick with a slightly earlier clock is not missed), the
tracked and currently RUNNING records, and as context the last hour and the
recent attempts of each failing operation; it evaluates the rules and publishes
the alerts whose dedup id was not delivered yet. Re-evaluating the same records
therefore never publishes twice, and a failed delivery keeps `since` where it was
(up to 24 hours back) so the alert is retried on the next tick.

Records completed outside the guard (RUN_TERMINATED, by the run-terminated sensor)
get their CloudWatch metrics here, once, when a metrics sink is given.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from opx_learning.alerts.metrics import MetricsSink, NullMetrics
from opx_learning.alerts.models import Alert
from opx_learning.alerts.publishers import AlertPublisher
from opx_learning.alerts.rules import ERROR_RATE_WINDOW, evaluate
from opx_learning.core.windows import iso, to_utc
from opx_learning.safety.audit import AuditLog
from opx_learning.safety.models import AuditRecord, AuditStatus, SkipReason

OVERLAP = timedelta(minutes=5)
FIRST_LOOKBACK = timedelta(hours=1)
MAX_CATCH_UP = timedelta(hours=24)
SENT_TTL = timedelta(hours=25)
SENT_MAX = 5000
HISTORY_ATTEMPTS = 50
_ID_CHARS = 20


@dataclass
class AlertCursor:
    """Sensor cursor: last evaluation time, tracked RUNNING ids, delivered dedup ids (short form) with epoch seconds."""

    since: datetime
    running: list[str] = field(default_factory=list)
    sent: dict[str, int] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str | None, now: datetime) -> AlertCursor:
        """Read a cursor; a missing or unreadable one starts one hour back."""
        with suppress(ValueError, KeyError, TypeError):
            data = json.loads(text) if text else None
            if isinstance(data, dict):
                return cls(
                    to_utc(data["since"], "since"),
                    [str(i) for i in data.get("running", [])],
                    {str(k): int(v) for k, v in dict(data.get("sent", {})).items()},
                )
        return cls(now - FIRST_LOOKBACK)

    def serialize(self) -> str:
        """Compact JSON form."""
        return json.dumps({"since": iso(self.since), "running": self.running, "sent": self.sent}, separators=(",", ":"))

    def seen(self, token: str) -> bool:
        """Whether this dedup token was delivered already."""
        return token[:_ID_CHARS] in self.sent

    def mark(self, token: str, now: datetime) -> None:
        """Remember a delivered token."""
        self.sent[token[:_ID_CHARS]] = int(now.timestamp())

    def prune(self, now: datetime) -> None:
        """Forget tokens older than 25 hours and keep at most the newest 5000."""
        horizon = int((now - SENT_TTL).timestamp())
        kept = sorted(((k, v) for k, v in self.sent.items() if v >= horizon), key=lambda kv: kv[1])
        self.sent = dict(kept[-SENT_MAX:])


@dataclass(frozen=True)
class TickResult:
    """What one evaluation did."""

    cursor: str
    alerts: list[Alert]
    published: list[Alert]
    failed: list[Alert]
    records: int
    metrics_published: int = 0

    def summary(self) -> str:
        """One line saying what the tick did (the sensor's skip reason, shown beside "0 runs requested" in the UI)."""
        if self.published:
            listed = ", ".join(f"{a.severity} {a.alarm} {a.operation}" for a in self.published[:10])
            more = f" and {len(self.published) - 10} more" if len(self.published) > 10 else ""
            parts = [f"published {len(self.published)} alert(s): {listed}{more}"]
        else:
            parts = ["published no alert"]
        parts.append(f"{self.records} audit record(s) judged")
        if self.failed:
            parts.append(f"{len(self.failed)} delivery failure(s), retried next tick")
        if self.metrics_published:
            parts.append(f"{self.metrics_published} RUN_TERMINATED record(s) sent to CloudWatch")
        return "; ".join(parts)


def _records(audit: AuditLog, cursor: AlertCursor, now: datetime) -> tuple[dict[str, AuditRecord], list[AuditRecord]]:
    fresh = {r.audit_id: r for r in audit.query(since=cursor.since - OVERLAP)}
    for record in audit.query(status=AuditStatus.RUNNING):
        fresh.setdefault(record.audit_id, record)
    for audit_id in cursor.running:
        if audit_id not in fresh:
            record = audit.get(audit_id)
            if record is not None:
                fresh[audit_id] = record
    history = {r.audit_id: r for r in audit.query(since=now - ERROR_RATE_WINDOW)}
    failing = {r.operation_type for r in fresh.values() if r.status is AuditStatus.FAILED}
    for operation in failing:
        history.update({r.audit_id: r for r in audit.query(operation_type=operation, limit=HISTORY_ATTEMPTS)})
    return fresh, list(history.values())


def alert_tick(
    audit: AuditLog,
    publisher: AlertPublisher,
    cursor_text: str | None,
    *,
    now: datetime,
    metrics: MetricsSink | None = None,
) -> TickResult:
    """Evaluate the rules on what changed since the cursor, publish new alerts, return the next cursor."""
    cursor = AlertCursor.parse(cursor_text, now)
    fresh, history = _records(audit, cursor, now)
    alerts = evaluate(fresh.values(), history=history, now=now)
    published, failed = [], []
    for alert in alerts:
        if cursor.seen(alert.dedup_id):
            continue
        if publisher.publish(alert):
            cursor.mark(alert.dedup_id, now)
            published.append(alert)
        else:
            failed.append(alert)
    sent_metrics = 0
    if metrics is not None and not isinstance(metrics, NullMetrics):
        for record in fresh.values():
            token = hashlib.sha256(f"metrics|{record.audit_id}".encode()).hexdigest()
            terminated = record.results.get("failure_reason") == SkipReason.RUN_TERMINATED.value
            if record.status is AuditStatus.FAILED and terminated and not cursor.seen(token) and metrics.record(record):
                cursor.mark(token, now)
                sent_metrics += 1
    if not failed:
        cursor.since = now
    cursor.since = max(cursor.since, now - MAX_CATCH_UP)
    cursor.running = sorted(r.audit_id for r in fresh.values() if r.status is AuditStatus.RUNNING)
    cursor.prune(now)
    return TickResult(cursor.serialize(), alerts, published, failed, len(fresh), sent_metrics)
