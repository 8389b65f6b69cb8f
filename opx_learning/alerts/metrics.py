"""CloudWatch metrics of completed audit records, published where records complete.

Every completed learning attempt becomes raw metrics in `settings.metrics_namespace`
(`LearningOperations`), each datum twice: with dimensions {OperationType, TriggerType}
and with {OperationType} alone (CloudWatch does not aggregate across dimensions,
so the per-operation rows and alarms read the second set):

* Success / Failure: 1 / 0 for a SUCCESS or FAILED attempt (so error rates are sums);
* Duration: the record's `duration_ms` (Milliseconds) for SUCCESS / FAILED;
* KillSwitchBlocked: 1 for an attempt SKIPPED because the kill switch is active or unreadable;
* RecordsProcessed: `records_processed`, else `total_incidents`, `outcome_count` or `snapshots` of the results;
* OutcomeCount / SkippedCount: the calibration's `outcome_count` / `skipped_count` when the results carry them;
* Drift: the calibration's signed `drift` (the band of largest |drift|) on SUCCESS;
* Heartbeat: 1 per successful sensor or schedule tick, dimension SensorName (docs/monitoring.md).

The same completion is also written as one JSON line to the CloudWatch Logs group
`/opx-learning/operations` (stream `audit`), which the dashboard's "last 20
operations" row queries with Logs Insights. Publishing never raises: a failure is
logged and the operation carries on. The local backend has no sink (`opx-learning
status` reads the audit trail directly).
"""

from __future__ import annotations

import json
import logging
import time
from abc import ABC, abstractmethod
from contextlib import suppress
from datetime import datetime
from typing import Any

from opx_learning.config import Settings
from opx_learning.core.windows import iso
from opx_learning.safety.models import (
    LEARNING_OPERATIONS,
    AuditRecord,
    AuditStatus,
    SkipReason,
)

_log = logging.getLogger("opx_learning.alerts.metrics")

OPERATIONS_LOG_GROUP = "/opx-learning/operations"
OPERATIONS_LOG_STREAM = "audit"
HEARTBEAT_METRIC = "Heartbeat"
_BLOCKED = (SkipReason.KILL_SWITCH_ACTIVE.value, SkipReason.KILL_SWITCH_UNAVAILABLE.value,
            SkipReason.STATE_MISMATCH.value)
_PROCESSED_KEYS = ("records_processed", "total_incidents", "outcome_count", "snapshots")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def metric_values(record: AuditRecord) -> list[tuple[str, float, str]]:
    """`(metric, value, unit)` triples for one completed learning record (empty for others)."""
    if record.operation_type not in LEARNING_OPERATIONS or not record.status.terminal:
        return []
    values: list[tuple[str, float, str]] = []
    results = record.results
    if record.status in (AuditStatus.SUCCESS, AuditStatus.FAILED):
        failed = record.status is AuditStatus.FAILED
        values += [("Success", 0.0 if failed else 1.0, "Count"), ("Failure", 1.0 if failed else 0.0, "Count")]
        if record.duration_ms is not None:
            values.append(("Duration", float(record.duration_ms), "Milliseconds"))
        for name, key in (("OutcomeCount", "outcome_count"), ("SkippedCount", "skipped_count")):
            number = _number(results.get(key))
            if number is not None:
                values.append((name, number, "Count"))
    elif record.skip_reason in _BLOCKED:
        values.append(("KillSwitchBlocked", 1.0, "Count"))
    if record.status is AuditStatus.SUCCESS:
        processed = next((_number(results.get(k)) for k in _PROCESSED_KEYS if _number(results.get(k)) is not None), None)
        if processed is not None:
            values.append(("RecordsProcessed", processed, "Count"))
        drift = _number(results.get("drift"))
        if drift is not None:
            values.append(("Drift", drift, "None"))
    return values


def metric_data(record: AuditRecord) -> list[dict[str, Any]]:
    """The `put_metric_data` MetricData of one record: each value with both dimension sets."""
    at = record.end_time or record.start_time
    full = [
        {"Name": "OperationType", "Value": record.operation_type.value},
        {"Name": "TriggerType", "Value": record.trigger_type.value},
    ]
    data = []
    for name, value, unit in metric_values(record):
        for dimensions in (full, full[:1]):
            data.append({"MetricName": name, "Dimensions": dimensions, "Timestamp": at, "Value": value, "Unit": unit})
    return data


def log_line(record: AuditRecord) -> dict[str, Any]:
    """The JSON line written to the operations log group (fields of the dashboard's last-operations table)."""
    return {
        "auditId": record.audit_id,
        "operationType": record.operation_type.value,
        "triggerType": record.trigger_type.value,
        "status": record.status.value,
        "startTime": iso(record.start_time),
        "endTime": iso(record.end_time) if record.end_time else None,
        "durationMs": record.duration_ms,
        "skipReason": record.skip_reason,
        "failureReason": record.results.get("failure_reason"),
        "runId": record.run_id,
        "principal": record.triggered_by.principal,
    }


class MetricsSink(ABC):
    """Receives every completed audit record; `record` never raises."""

    @abstractmethod
    def record(self, record: AuditRecord) -> bool:
        """Publish the record's metrics; False if that failed (already logged)."""

    def __call__(self, record: AuditRecord) -> None:
        """Hook form used by the guard."""
        self.record(record)

    def heartbeat(self, name: str, at: datetime) -> bool:
        """Publish one tick of a sensor or schedule (metric `Heartbeat`, dimension SensorName); False if that failed."""
        return True


class NullMetrics(MetricsSink):
    """The local backend's sink: nothing to publish."""

    def record(self, record: AuditRecord) -> bool:
        """Do nothing."""
        return True


class CloudWatchMetrics(MetricsSink):
    """Publishes raw metrics to CloudWatch and the completion line to CloudWatch Logs.

    Args:
        settings: region and namespace.
        attempts: tries per call (sleeping `backoff_seconds * 2**n` in between).
        backoff_seconds: first backoff.
    """

    def __init__(self, settings: Settings, *, attempts: int = 2, backoff_seconds: float = 0.2) -> None:
        self.settings = settings
        self.attempts = max(1, attempts)
        self.backoff_seconds = backoff_seconds
        self._cloudwatch: Any = None
        self._logs: Any = None

    def _clients(self) -> tuple[Any, Any]:
        from opx_learning.alerts.publishers import aws_client

        if self._cloudwatch is None:
            self._cloudwatch = aws_client("cloudwatch", self.settings)
            self._logs = aws_client("logs", self.settings)
        return self._cloudwatch, self._logs

    def record(self, record: AuditRecord) -> bool:
        """Publish one completed record (metrics and log line); False if either failed after retries."""
        data = metric_data(record)
        if not data:
            return True
        ok = self._retry("put_metric_data", lambda: self._put_metrics(data))
        return self._retry("put_log_events", lambda: self._put_log(record)) and ok

    def heartbeat(self, name: str, at: datetime) -> bool:
        """Publish `Heartbeat` = 1 with dimension SensorName (the alarms of `monitoring deploy` read it)."""
        datum = {"MetricName": HEARTBEAT_METRIC, "Dimensions": [{"Name": "SensorName", "Value": name}],
                 "Timestamp": at, "Value": 1.0, "Unit": "Count"}
        return self._retry("put_metric_data", lambda: self._put_metrics([datum]))

    def _retry(self, what: str, call: Any) -> bool:
        for attempt in range(self.attempts):
            try:
                call()
                return True
            except Exception as exc:  # noqa: BLE001 - metrics must never fail the operation
                _log.warning("CloudWatch %s failed (%s/%s): %s: %s", what, attempt + 1, self.attempts, type(exc).__name__, exc)
                if attempt + 1 < self.attempts:
                    time.sleep(self.backoff_seconds * 2**attempt)
        return False

    def _put_metrics(self, data: list[dict[str, Any]]) -> None:
        cloudwatch, _ = self._clients()
        cloudwatch.put_metric_data(Namespace=self.settings.metrics_namespace, MetricData=data)

    def _put_log(self, record: AuditRecord) -> None:
        _, logs = self._clients()
        at = record.end_time or record.start_time
        event = {"timestamp": int(at.timestamp() * 1000), "message": json.dumps(log_line(record), sort_keys=True)}
        try:
            logs.put_log_events(logGroupName=OPERATIONS_LOG_GROUP, logStreamName=OPERATIONS_LOG_STREAM, logEvents=[event])
        except logs.exceptions.ResourceNotFoundException:
            ensure_log_stream(logs)
            logs.put_log_events(logGroupName=OPERATIONS_LOG_GROUP, logStreamName=OPERATIONS_LOG_STREAM, logEvents=[event])


def ensure_log_stream(logs: Any) -> None:
    """Create the operations log group and stream if missing (idempotent)."""
    for create, kwargs in (
        (logs.create_log_group, {"logGroupName": OPERATIONS_LOG_GROUP}),
        (logs.create_log_stream, {"logGroupName": OPERATIONS_LOG_GROUP, "logStreamName": OPERATIONS_LOG_STREAM}),
    ):
        with suppress(logs.exceptions.ResourceAlreadyExistsException):
            create(**kwargs)


def metrics_sink(settings: Settings) -> MetricsSink:
    """CloudWatch on the aws backend, a no-op sink locally."""
    from opx_learning.backends import backend_for

    return backend_for(settings).metrics_sink()
