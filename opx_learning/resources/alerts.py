"""Dagster resource exposing alert delivery and CloudWatch metrics to sensors and assets."""

from __future__ import annotations

import dagster as dg

from opx_learning.alerts.metrics import MetricsSink, metrics_sink
from opx_learning.alerts.publishers import AlertPublisher, alert_publisher
from opx_learning.config import get_settings


class AlertsResource(dg.ConfigurableResource):
    """Alert publisher (SNS FIFO on aws, `$OPX_HOME/alerts.jsonl` locally) and metrics sink of the active backend.

    The backend follows `OPX_BACKEND` / `OPX_HOME` at call time, like `SafetyResource`.
    """

    max_attempts: int = 3
    backoff_seconds: float = 0.5

    def publisher(self) -> AlertPublisher:
        """The active backend's publisher, retrying `max_attempts` times with exponential backoff."""
        return alert_publisher(get_settings(), max_attempts=self.max_attempts, backoff_seconds=self.backoff_seconds)

    def metrics(self) -> MetricsSink:
        """CloudWatch metrics on the aws backend, a no-op sink locally."""
        return metrics_sink(get_settings())
