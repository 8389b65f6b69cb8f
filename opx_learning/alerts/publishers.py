"""Alert delivery (docs/alerts.md): local JSON lines or an SNS FIFO topic, retried with backoff, never raising.

A publisher is called from inside operations (the guard's alert hook) and from the
alert sensor, so `publish` returns False on a failed delivery instead of raising:
after `max_attempts` tries (sleeping `backoff_seconds * 2**n` between them) the
alert is written to the log and the caller carries on.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

from opx_learning.alerts.models import KILL_SWITCH_DISABLED, KILL_SWITCH_ENABLED, Alert
from opx_learning.config import Settings
from opx_learning.safety.models import AlertHook, log_alert

_log = logging.getLogger("opx_learning.alerts")

DEFAULT_ATTEMPTS = 3
DEFAULT_BACKOFF_SECONDS = 0.5
_KILL_SWITCH_OPERATIONS = {KILL_SWITCH_DISABLED: "KILL_SWITCH_DISABLE", KILL_SWITCH_ENABLED: "KILL_SWITCH_ENABLE"}


class AlertPublisher(ABC):
    """Delivers alerts; `publish` retries with exponential backoff and never raises.

    Args:
        max_attempts: delivery attempts per alert (at least 1).
        backoff_seconds: sleep before the second attempt; doubles after each failure.
        sleep: sleep function (tests pass a recorder).
    """

    def __init__(
        self,
        *,
        max_attempts: int = DEFAULT_ATTEMPTS,
        backoff_seconds: float = DEFAULT_BACKOFF_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.max_attempts = max(1, int(max_attempts))
        self.backoff_seconds = max(0.0, float(backoff_seconds))
        self.sleep = sleep

    @abstractmethod
    def _deliver(self, alert: Alert) -> None:
        """Deliver one alert once (raise on failure; `publish` retries)."""

    def publish(self, alert: Alert) -> bool:
        """Deliver `alert` (at most once per dedup id where the backend can tell); False if every attempt failed."""
        for attempt in range(self.max_attempts):
            try:
                self._deliver(alert)
                return True
            except Exception as exc:  # noqa: BLE001 - delivery must never fail the operation
                last = exc
                _log.warning(
                    "alert delivery %s/%s failed for %s %s: %s: %s",
                    attempt + 1, self.max_attempts, alert.severity, alert.alarm, type(exc).__name__, exc,
                )
                if attempt + 1 < self.max_attempts:
                    self.sleep(self.backoff_seconds * 2**attempt)
        # A broken log handler must not fail the operation either.
        with contextlib.suppress(Exception):
            log_alert(alert.severity, alert.alarm, {**alert.to_dict(), "delivery_error": f"{type(last).__name__}: {last}"})
        return False

    def hook(self) -> AlertHook:
        """An `on_alert(severity, alarm, details)` hook for the safety guard that publishes through this publisher."""

        def on_alert(severity: str, alarm: str, details: dict) -> None:
            try:
                alert = alert_from_hook(severity, alarm, details)
            except Exception:  # noqa: BLE001 - malformed hook input falls back to the log
                log_alert(severity, alarm, details)
                return
            self.publish(alert)

        return on_alert


def alert_from_hook(severity: str, alarm: str, details: dict[str, Any]) -> Alert:
    """The Alert for a call of the guard's `on_alert` hook (kill-switch INFO, KILL_SWITCH_UNAVAILABLE P1, ...).

    Alerts without an audit id (an unreadable kill switch is detected before any record
    exists) are deduplicated per alarm and operation within a 5-minute bucket.
    """
    details = dict(details or {})
    operation = details.get("operation") or _KILL_SWITCH_OPERATIONS.get(alarm) or "SAFETY"
    return Alert(
        alarm=str(alarm),
        severity=str(severity),
        operation=str(operation),
        details=details,
        audit_id=details.get("audit_id"),
        run_id=details.get("run_id"),
        trigger_type=details.get("trigger_type"),
    )


def log_delivered(alert: Alert, where: str) -> None:
    """Log one readable line for a delivered alert (the full alert is in the file or the SNS message)."""
    about = ": ".join(str(alert.details[key]) for key in ("where", "problem") if alert.details.get(key))
    _log.log(logging.INFO if alert.severity == "INFO" else logging.ERROR, "alert %s %s %s%s -> %s (dedup id %s)",
             alert.severity, alert.alarm, alert.operation, f" {about}" if about else "", where, alert.dedup_id[:16])


class LocalAlertPublisher(AlertPublisher):
    """Appends alerts as JSON lines to a file (default `$OPX_HOME/alerts.jsonl`) and logs them.

    An alert whose `dedup_id` is already in the file is not written again; the check
    and the append happen under an exclusive file lock, so concurrent processes agree.
    """

    def __init__(self, path: Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.path = Path(path)
        self._seen: set[str] = set()
        self._offset = 0

    def _deliver(self, alert: Alert) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a+", encoding="utf-8") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                self._read_new(handle)
                if alert.dedup_id in self._seen:
                    _log.debug("alert %s %s already delivered (%s)", alert.severity, alert.alarm, alert.dedup_id)
                    return
                handle.seek(0, 2)
                handle.write(json.dumps(alert.to_dict(), default=str, sort_keys=True) + "\n")
                handle.flush()
                self._offset = handle.tell()
                self._seen.add(alert.dedup_id)
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        log_delivered(alert, str(self.path))

    def _read_new(self, handle: Any) -> None:
        handle.seek(0, 2)
        size = handle.tell()
        if size < self._offset:
            self._seen.clear()
            self._offset = 0
        handle.seek(self._offset)
        for line in handle.read().splitlines():
            try:
                self._seen.add(json.loads(line)["dedup_id"])
            except (ValueError, KeyError, TypeError):
                continue
        self._offset = size

    def read(self) -> list[dict[str, Any]]:
        """Every alert in the file, oldest first (unreadable lines are skipped)."""
        if not self.path.exists():
            return []
        alerts = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                alerts.append(json.loads(line))
            except ValueError:
                continue
        return alerts


class SnsAlertPublisher(AlertPublisher):
    """Publishes alerts to an SNS FIFO topic (the message shape of docs/alerts.md).

    The topic is `topic_arn` when given, else the ARN of `topic_name` in the caller's
    account and region (`opx-learning monitoring deploy` creates it). SNS drops a
    message whose `MessageDeduplicationId` it saw in the last 5 minutes; the alert
    sensor keeps the ids it sent in its cursor for longer re-evaluations.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        topic_arn: str | None = None,
        client: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self._topic_arn = topic_arn or settings.alerts_topic_arn
        self._client = client

    @property
    def client(self) -> Any:
        """The boto3 SNS client (our retries only: botocore's own are off, timeouts short)."""
        if self._client is None:
            self._client = aws_client("sns", self.settings)
        return self._client

    @property
    def topic_arn(self) -> str:
        """The topic's ARN, resolved once from the settings or the caller identity."""
        if self._topic_arn is None:
            account = aws_client("sts", self.settings).get_caller_identity()["Account"]
            self._topic_arn = f"arn:aws:sns:{self.settings.region}:{account}:{self.settings.alerts_topic_name}"
        return self._topic_arn

    def _deliver(self, alert: Alert) -> None:
        self.client.publish(
            TopicArn=self.topic_arn,
            Subject=alert.subject,
            Message=alert.message(),
            MessageGroupId=alert.group_id,
            MessageDeduplicationId=alert.dedup_id,
            MessageAttributes={
                "OperationType": {"DataType": "String", "StringValue": alert.operation},
                "AlarmType": {"DataType": "String", "StringValue": alert.alarm},
                "Severity": {"DataType": "String", "StringValue": alert.severity},
            },
        )
        log_delivered(alert, self.topic_arn)


def aws_client(service: str, settings: Settings) -> Any:
    """A boto3 client for the settings' region with short timeouts and no botocore retries."""
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=3, read_timeout=10, retries={"max_attempts": 1, "mode": "standard"})
    return boto3.client(service, region_name=settings.region, config=config)


def alert_publisher(settings: Settings, **kwargs: Any) -> AlertPublisher:
    """The publisher of the settings' backend: SNS on `aws`, the local JSON-lines file otherwise."""
    from opx_learning.backends import backend_for

    return backend_for(settings).alert_publisher(**kwargs)


def alert_hook(settings: Settings) -> AlertHook:
    """The guard's default alert hook: publish through the settings' backend's publisher (log if that fails)."""
    try:
        return alert_publisher(settings).hook()
    except Exception:  # noqa: BLE001 - no publisher means the log is the alert channel
        return log_alert
