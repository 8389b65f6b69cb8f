"""CloudWatch dashboard, alarms and SNS topics (docs/alerts.md), created or updated idempotently (`opx-learning monitoring deploy`).

Dashboard `opx-learning-operations`, the runbook's six rows (24 columns, 6 high each):

1. success / failure counts per operation (hourly sums);
2. error rate per operation, metric math `100 * Failure / (Success + Failure)`, annotated at 10 %;
3. duration average and p99 per operation, annotated at 5 minutes;
4. trigger-type breakdown: attempts per operation for SCHEDULED, MANUAL and BACKFILL;
5. calibration drift over time (daily average) annotated at ±0.15, and calibration
   outcome / skipped counts with the operations blocked by the kill switch;
6. last 20 operations: a CloudWatch Logs Insights table over `/opx-learning/operations`,
   the log group every completed record is written to (`opx_learning.alerts.metrics`).
   It needs no extra service and is live, unlike a text widget rendered at deploy time.

Alarms (names prefixed `opx-learning-`, severity first in the description) mirror
the alert table (docs/design.md#alerts) on the per-operation metrics: calibration failure (P0), 3 failures of
one operation within a day (P0, the metric form of "3 consecutive"), 2 pattern
extraction / snapshot failures within a day (P1), error rate > 20 % in an hour (P1),
> 10 % in an hour (P2), a single pattern extraction / snapshot failure (P2), an
operation longer than 5 minutes (P2) and |drift| > 0.15 (P3). CloudWatch counts
failures, not attempts in order: the exact "consecutive" rules and the kill-switch
alerts are paged by the alert sensor through the FIFO topic. Alarm actions go to a
standard topic `opx-learning-operations-alarms`, because CloudWatch alarm actions
cannot target an SNS FIFO topic.

Monitoring of the monitors (docs/monitoring.md): one alarm per sensor that starts RUNNING,
`opx-learning-heartbeat-<sensor>` (P1), on the `Heartbeat` metric (dimension
SensorName) each successful tick puts: fewer than one heartbeat in each of 5
consecutive minutes, missing data treated as breaching, so a sensor (or a daemon)
that stops publishing altogether raises it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from opx_learning.alerts.metrics import (
    HEARTBEAT_METRIC,
    OPERATIONS_LOG_GROUP,
    ensure_log_stream,
)
from opx_learning.alerts.publishers import aws_client
from opx_learning.alerts.rules import (
    ELEVATED_ERROR_RATE_LIMIT,
    HIGH_ERROR_RATE_LIMIT,
    TIMEOUT_AFTER,
)
from opx_learning.config import Settings
from opx_learning.core.schema import DRIFT_CRITICAL
from opx_learning.safety.models import LEARNING_OPERATIONS, TriggerType

DASHBOARD_NAME = "opx-learning-operations"
ALARM_PREFIX = "opx-learning-"
ALARM_TOPIC_NAME = "opx-learning-operations-alarms"
TIMEOUT_MS = int(TIMEOUT_AFTER.total_seconds()) * 1000
DRIFT_LIMIT = DRIFT_CRITICAL
ERROR_RATE_ALERT_PERCENT = round(ELEVATED_ERROR_RATE_LIMIT * 100)
HEARTBEAT_MINUTES = 5
_LABELS = {"PATTERN_EXTRACTION": "Pattern extraction", "CALIBRATION": "Calibration", "SNAPSHOT": "Snapshot"}
_ERROR_RATE = "IF((s+f)>0, 100*f/(s+f), 0)"


def _slug(operation: str) -> str:
    return operation.lower().replace("_", "-")


def _metric(namespace: str, name: str, operation: str, trigger: str | None = None, **options: Any) -> list[Any]:
    dims: list[Any] = ["OperationType", operation] + (["TriggerType", trigger] if trigger else [])
    return [namespace, name, *dims, options] if options else [namespace, name, *dims]


def _widget(x: int, y: int, width: int, title: str, metrics: list[Any], settings: Settings, **props: Any) -> dict[str, Any]:
    properties = {"title": title, "metrics": metrics, "region": settings.region, "view": "timeSeries", "period": 3600}
    properties.update(props)
    return {"type": "metric", "x": x, "y": y, "width": width, "height": 6, "properties": properties}


def dashboard_body(settings: Settings) -> dict[str, Any]:
    """The dashboard JSON (six rows) for the settings' namespace and region."""
    ns = settings.metrics_namespace
    ops = [op.value for op in LEARNING_OPERATIONS]
    widgets: list[dict[str, Any]] = []
    for i, op in enumerate(ops):
        label = _LABELS[op]
        widgets.append(_widget(8 * i, 0, 8, f"{label} success / failure (hourly)", [
            _metric(ns, "Success", op, stat="Sum", label="Success", color="#2ca02c"),
            _metric(ns, "Failure", op, stat="Sum", label="Failure", color="#d62728"),
        ], settings, stat="Sum"))
        widgets.append(_widget(8 * i, 6, 8, f"{label} error rate (%)", [
            _metric(ns, "Success", op, stat="Sum", id="s", visible=False),
            _metric(ns, "Failure", op, stat="Sum", id="f", visible=False),
            [{"expression": _ERROR_RATE, "label": "Error rate (%)", "id": "e"}],
        ], settings, yAxis={"left": {"min": 0, "max": 100}},
            annotations={"horizontal": [{"label": "Alert > 10 %", "value": ERROR_RATE_ALERT_PERCENT, "color": "#d62728"}]}))
        widgets.append(_widget(8 * i, 12, 8, f"{label} duration (avg, p99)", [
            _metric(ns, "Duration", op, stat="Average", label="avg (ms)"),
            _metric(ns, "Duration", op, stat="p99", label="p99 (ms)"),
        ], settings, annotations={"horizontal": [{"label": "Timeout 5 min", "value": TIMEOUT_MS, "color": "#d62728"}]}))
    for i, trigger in enumerate(t.value for t in TriggerType):
        metrics: list[Any] = []
        for j, op in enumerate(ops):
            metrics += [
                _metric(ns, "Success", op, trigger, stat="Sum", id=f"s{j}", visible=False),
                _metric(ns, "Failure", op, trigger, stat="Sum", id=f"f{j}", visible=False),
                [{"expression": f"FILL(s{j},0)+FILL(f{j},0)", "label": _LABELS[op], "id": f"n{j}"}],
            ]
        widgets.append(_widget(8 * i, 18, 8, f"{trigger.title()} operations by type", metrics, settings, stacked=True))
    widgets.append(_widget(0, 24, 12, "Calibration drift over time", [
        _metric(ns, "Drift", "CALIBRATION", stat="Average", label="drift (accuracy - confidence)"),
    ], settings, period=86400, yAxis={"left": {"min": -1, "max": 1}}, annotations={"horizontal": [
        {"label": "+0.15", "value": DRIFT_LIMIT, "color": "#ff7f0e"},
        {"label": "-0.15", "value": -DRIFT_LIMIT, "color": "#ff7f0e"},
    ]}))
    widgets.append(_widget(12, 24, 12, "Calibration details: outcome / skipped counts, kill-switch blocked", [
        _metric(ns, "OutcomeCount", "CALIBRATION", stat="Maximum", label="outcomes"),
        _metric(ns, "SkippedCount", "CALIBRATION", stat="Maximum", label="skipped (no confidence)"),
        *[_metric(ns, "KillSwitchBlocked", op, stat="Sum", label=f"{_LABELS[op]} blocked") for op in ops],
    ], settings, period=86400))
    query = (
        f"SOURCE '{OPERATIONS_LOG_GROUP}' | fields @timestamp, operationType, triggerType, status, durationMs, auditId"
        " | sort @timestamp desc | limit 20"
    )
    widgets.append({
        "type": "log", "x": 0, "y": 30, "width": 24, "height": 6,
        "properties": {"title": "Last 20 operations", "query": query, "region": settings.region, "view": "table"},
    })
    return {"widgets": widgets}


def dashboard_rows(body: dict[str, Any]) -> list[list[str]]:
    """Widget titles grouped by row (by `y`), top to bottom."""
    rows: dict[int, list[str]] = {}
    for widget in body["widgets"]:
        rows.setdefault(widget["y"], []).append(widget["properties"]["title"])
    return [rows[y] for y in sorted(rows)]


def _alarm(name: str, severity: str, text: str, topic_arn: str, **spec: Any) -> dict[str, Any]:
    return {
        "AlarmName": ALARM_PREFIX + name,
        "AlarmDescription": f"{severity}: {text}",
        "ActionsEnabled": True,
        "AlarmActions": [topic_arn],
        "ComparisonOperator": spec.pop("ComparisonOperator", "GreaterThanOrEqualToThreshold"),
        "EvaluationPeriods": spec.pop("EvaluationPeriods", 1),
        "TreatMissingData": spec.pop("TreatMissingData", "notBreaching"),
        **spec,
    }


def _stat(namespace: str, metric: str, operation: str, stat: str, period: int) -> dict[str, Any]:
    return {
        "Namespace": namespace, "MetricName": metric, "Statistic": stat, "Period": period,
        "Dimensions": [{"Name": "OperationType", "Value": operation}],
    }


def _error_rate(namespace: str, operation: str) -> list[dict[str, Any]]:
    def stat(metric: str, metric_id: str) -> dict[str, Any]:
        return {
            "Id": metric_id, "ReturnData": False,
            "MetricStat": {
                "Metric": {"Namespace": namespace, "MetricName": metric,
                           "Dimensions": [{"Name": "OperationType", "Value": operation}]},
                "Period": 3600, "Stat": "Sum",
            },
        }

    return [stat("Success", "s"), stat("Failure", "f"), {"Id": "e", "Expression": _ERROR_RATE, "Label": "error rate %", "ReturnData": True}]


def alarm_specs(settings: Settings, topic_arn: str) -> list[dict[str, Any]]:
    """`put_metric_alarm` arguments for every alarm of the alert table that a metric can express."""
    ns = settings.metrics_namespace
    alarms = [_alarm(
        "calibration-failure", "P0", "a CALIBRATION attempt FAILED - critical, act immediately", topic_arn,
        Threshold=1, **_stat(ns, "Failure", "CALIBRATION", "Sum", 3600),
    )]
    for operation in (op.value for op in LEARNING_OPERATIONS):
        slug, label = _slug(operation), _LABELS[operation]
        alarms.append(_alarm(
            f"{slug}-consecutive-failures", "P0", f"3 or more {label} failures within a day", topic_arn,
            Threshold=3, **_stat(ns, "Failure", operation, "Sum", 86400),
        ))
        alarms.append(_alarm(
            f"{slug}-high-error-rate", "P1", f"{label} error rate > 20 % over the last hour", topic_arn,
            Threshold=round(HIGH_ERROR_RATE_LIMIT * 100), ComparisonOperator="GreaterThanThreshold", Metrics=_error_rate(ns, operation),
        ))
        alarms.append(_alarm(
            f"{slug}-error-rate", "P2", f"{label} error rate > 10 % over the last hour", topic_arn,
            Threshold=ERROR_RATE_ALERT_PERCENT, ComparisonOperator="GreaterThanThreshold",
            Metrics=_error_rate(ns, operation),
        ))
        alarms.append(_alarm(
            f"{slug}-timeout", "P2", f"a {label} operation ran longer than 5 minutes", topic_arn,
            Threshold=TIMEOUT_MS, ComparisonOperator="GreaterThanThreshold",
            **_stat(ns, "Duration", operation, "Maximum", 300),
        ))
        if operation != "CALIBRATION":
            alarms.append(_alarm(
                f"{slug}-failure", "P1", f"{label}: 2 failures within a day (runbook: 2 consecutive)", topic_arn,
                Threshold=2, **_stat(ns, "Failure", operation, "Sum", 86400),
            ))
            alarms.append(_alarm(
                f"{slug}-single-failure", "P2", f"a {label} attempt FAILED", topic_arn,
                Threshold=1, **_stat(ns, "Failure", operation, "Sum", 3600),
            ))
    alarms.append(_alarm(
        "significant-drift", "P3", "|drift| > 0.15 in a calibration (advisory only, review recommendations)",
        topic_arn, Threshold=DRIFT_LIMIT, ComparisonOperator="GreaterThanThreshold",
        Metrics=[
            {"Id": "d", "ReturnData": False, "MetricStat": {
                "Metric": {"Namespace": ns, "MetricName": "Drift",
                           "Dimensions": [{"Name": "OperationType", "Value": "CALIBRATION"}]},
                "Period": 86400, "Stat": "Average"}},
            {"Id": "a", "Expression": "ABS(d)", "Label": "|drift|", "ReturnData": True},
        ],
    ))
    return alarms


def heartbeat_alarm_specs(settings: Settings, topic_arn: str, sensors: Sequence[str]) -> list[dict[str, Any]]:
    """One P1 alarm per sensor: no `Heartbeat` for 5 minutes, missing data breaching."""
    return [_alarm(
        f"heartbeat-{name.replace('_', '-')}", "P1",
        f"MONITOR_STALE: sensor {name} has not ticked for 5 minutes (no Heartbeat metric)", topic_arn,
        Namespace=settings.metrics_namespace, MetricName=HEARTBEAT_METRIC,
        Dimensions=[{"Name": "SensorName", "Value": name}], Statistic="Sum", Period=60,
        EvaluationPeriods=HEARTBEAT_MINUTES, DatapointsToAlarm=HEARTBEAT_MINUTES, Threshold=1,
        ComparisonOperator="LessThanThreshold", TreatMissingData="breaching",
    ) for name in sensors]


def ensure_alert_topic(settings: Settings, sns: Any = None) -> str:
    """ARN of the FIFO alert topic: `settings.alerts_topic_arn`, else created (idempotent) from its name."""
    if settings.alerts_topic_arn:
        return settings.alerts_topic_arn
    sns = sns or aws_client("sns", settings)
    name = settings.alerts_topic_name if settings.alerts_topic_name.endswith(".fifo") else settings.alerts_topic_name + ".fifo"
    return sns.create_topic(
        Name=name, Attributes={"FifoTopic": "true", "ContentBasedDeduplication": "false"}
    )["TopicArn"]


def deploy(settings: Settings, sensors: Sequence[str] = ()) -> dict[str, Any]:
    """Create or update topics, log group, dashboard and alarms; safe to run any number of times.

    Args:
        settings: region, namespace and topic names.
        sensors: sensors that get a heartbeat alarm (those that start RUNNING).

    Returns:
        What was deployed: dashboard rows, alarms, topics, log group.
    """
    sns = aws_client("sns", settings)
    cloudwatch = aws_client("cloudwatch", settings)
    topic_arn = ensure_alert_topic(settings, sns)
    alarm_topic_arn = sns.create_topic(Name=ALARM_TOPIC_NAME)["TopicArn"]
    ensure_log_stream(aws_client("logs", settings))
    body = dashboard_body(settings)
    cloudwatch.put_dashboard(DashboardName=DASHBOARD_NAME, DashboardBody=json.dumps(body))
    alarms = alarm_specs(settings, alarm_topic_arn) + heartbeat_alarm_specs(settings, alarm_topic_arn, sensors)
    for alarm in alarms:
        cloudwatch.put_metric_alarm(**alarm)
    return {
        "dashboard": DASHBOARD_NAME,
        "rows": dashboard_rows(body),
        "alarms": [{"name": a["AlarmName"], "description": a["AlarmDescription"]} for a in alarms],
        "alert_topic_arn": topic_arn,
        "alarm_topic_arn": alarm_topic_arn,
        "log_group": OPERATIONS_LOG_GROUP,
        "namespace": settings.metrics_namespace,
        "region": settings.region,
    }
