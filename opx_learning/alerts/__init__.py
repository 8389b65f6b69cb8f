"""Alerts, metrics and dashboard (docs/alerts.md): rules over the audit trail, SNS / local delivery, CloudWatch."""

from opx_learning.alerts.models import Alert
from opx_learning.alerts.publishers import (
    AlertPublisher,
    LocalAlertPublisher,
    SnsAlertPublisher,
    alert_hook,
    alert_publisher,
)
from opx_learning.alerts.rules import evaluate

__all__ = [
    "Alert",
    "AlertPublisher",
    "LocalAlertPublisher",
    "SnsAlertPublisher",
    "alert_hook",
    "alert_publisher",
    "evaluate",
]
