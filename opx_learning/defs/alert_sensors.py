"""Sensor raising the operations alerts (docs/alerts.md) from the audit trail.

`operations_alert_sensor` runs every 60 s: it reads the audit records that are new
or changed since its cursor, evaluates the rules of `opx_learning.alerts.rules`
(failures, consecutive failures, error rates, timeouts, drift, kill-switch changes)
and publishes through `AlertsResource` (SNS FIFO on aws, `$OPX_HOME/alerts.jsonl`
locally). Its cursor remembers the dedup ids it delivered, and every alert carries
a dedup id derived from alarm, operation and audit id, so re-evaluating a tick
never pages twice (see `opx_learning.alerts.monitor`).

It starts RUNNING, unlike the schedules: it launches no run and changes no data,
and a CALIBRATION failure is a P0 from the first day of a deployment, so alerting
must not wait for an operator to remember to switch it on (the runbook's "enable
after verification" applies to schedules that do work). The kill switch does not
stop it either: SKIPPED records raise nothing, and kill-switch changes are INFO.
Each tick also judges the heartbeat of `monitors_watchdog_sensor`, which in turn
watches this sensor (`opx_learning.defs.monitors`).
"""

from __future__ import annotations

import dagster as dg

from opx_learning.alerts.monitor import alert_tick
from opx_learning.defs.location import Location
from opx_learning.defs.monitors import WATCHDOG, heartbeat, watch_watchdog
from opx_learning.resources.alerts import AlertsResource
from opx_learning.resources.safety import SafetyResource
from opx_learning.safety.audit import utcnow


def build_alert_sensors(loc: Location) -> list[dg.SensorDefinition]:
    """The alert sensor of one location."""

    @dg.sensor(
        name=loc.names("operations_alert_sensor"),
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        required_resource_keys=loc.names.required("safety", "alerts"),
        description="Publishes the P0-P3 and INFO alerts for new audit records; idempotent across re-evaluations.",
    )
    @heartbeat(loc.names("operations_alert_sensor"), loc.settings)
    def operations_alert_sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        """Evaluate the alert rules on the audit records changed since the cursor; the tick never launches a run."""
        r = loc.names.resources(context)
        return _alert_tick(context, r.safety, r.alerts)

    return [operations_alert_sensor]


def _alert_tick(context: dg.SensorEvaluationContext, safety: SafetyResource, alerts: AlertsResource) -> dg.SkipReason:
    now, publisher = utcnow(), alerts.publisher()
    result = alert_tick(safety.guard().audit, publisher, context.cursor, now=now, metrics=alerts.metrics())
    context.update_cursor(result.cursor)
    for alert in result.published:
        context.log.warning(f"alert {alert.severity} {alert.alarm} {alert.operation} ({alert.audit_id or '-'})")
    for alert in result.failed:
        context.log.error(f"alert delivery failed: {alert.severity} {alert.alarm} {alert.operation}")
    watchdog = watch_watchdog(context.instance, publisher, now, alerts.settings(), context.repository_def)
    for alert in watchdog:
        context.log.warning(f"P1 {alert.alarm} {alert.operation}: {alert.details['reason']}")
    return dg.SkipReason(result.summary() + (f"; {WATCHDOG} is stale (P1 published)" if watchdog else ""))
