"""Dagster resources exposing alert delivery and CloudWatch metrics to sensors and assets, one class per backend."""

from __future__ import annotations

from opx_learning.alerts.metrics import MetricsSink, metrics_sink
from opx_learning.alerts.publishers import AlertPublisher, alert_publisher
from opx_learning.resources.base import AwsFields, OpxResource


class AlertsResource(OpxResource):
    """Alert publisher (SNS FIFO on aws, `<home>/alerts.jsonl` locally) and metrics sink of the configured backend."""

    max_attempts: int = 3
    backoff_seconds: float = 0.5

    def publisher(self) -> AlertPublisher:
        """The configured publisher, retrying `max_attempts` times with exponential backoff."""
        return alert_publisher(self.settings(), max_attempts=self.max_attempts, backoff_seconds=self.backoff_seconds)

    def metrics(self) -> MetricsSink:
        """CloudWatch metrics on the aws backend, a no-op sink locally."""
        return metrics_sink(self.settings())


class LocalAlertsResource(AlertsResource):
    """Alerts appended to `<home>/alerts.jsonl` (and logged); no metrics."""


class AwsAlertsResource(AlertsResource, AwsFields):
    """Alerts to the SNS FIFO topic, metrics to CloudWatch."""
