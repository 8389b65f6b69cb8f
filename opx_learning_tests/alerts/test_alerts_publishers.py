"""Alert delivery: local JSON lines with dedup, SNS FIFO over moto's HTTP server, retries that never raise."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import boto3
import pytest

from opx_learning.alerts.models import Alert
from opx_learning.alerts.publishers import (
    LocalAlertPublisher,
    SnsAlertPublisher,
    alert_publisher,
)
from opx_learning.backends import guard_for
from opx_learning.config import get_settings
from opx_learning.safety.models import SYSTEM, AuthorityType, Principal

ADMIN = Principal("ops-admin", AuthorityType.EMERGENCY_OVERRIDE)


def _alert(audit_id: str = "CALIBRATION#1", alarm: str = "CALIBRATION_FAILURE") -> Alert:
    return Alert(alarm, "P0", "CALIBRATION", {"failure_reason": "INSUFFICIENT_DATA"}, audit_id=audit_id, run_id="r1")


def test_local_publisher_appends_json_lines_once_per_dedup_id(opx_home: Path) -> None:
    publisher = alert_publisher(get_settings())
    assert isinstance(publisher, LocalAlertPublisher) and publisher.path == opx_home / "alerts.jsonl"
    assert publisher.publish(_alert()) and publisher.publish(_alert())
    assert LocalAlertPublisher(opx_home / "alerts.jsonl").publish(_alert())  # another process, same file
    assert publisher.publish(_alert("CALIBRATION#2"))
    lines = [json.loads(line) for line in (opx_home / "alerts.jsonl").read_text().splitlines()]
    assert [line["audit_id"] for line in lines] == ["CALIBRATION#1", "CALIBRATION#2"]
    first = lines[0]
    assert first["alarm"] == "CALIBRATION_FAILURE" and first["severity"] == "P0" and first["run_id"] == "r1"
    assert first["details"] == {"failure_reason": "INSUFFICIENT_DATA"} and first["action"] == "INVESTIGATE"
    assert first["dedup_id"] == _alert().dedup_id and first["subject"] == "[P0] opx-learning CALIBRATION_FAILURE: CALIBRATION"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_delivered_alert_is_logged_as_one_readable_line(opx_home: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The log (a command's stderr) names the alert, the damaged object and the file, not the alert's JSON again."""
    alert = Alert("DATA_CORRUPTION", "P0", "INTEGRITY", {"where": "/data/a.parquet", "problem": "content does not match"})
    with caplog.at_level("INFO", logger="opx_learning.alerts"):
        assert LocalAlertPublisher(opx_home / "alerts.jsonl").publish(alert)
        assert LocalAlertPublisher(opx_home / "alerts.jsonl").publish(alert)  # a duplicate is not logged again
    lines = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    expected = (f"alert P0 DATA_CORRUPTION INTEGRITY /data/a.parquet: content does not match -> {opx_home / 'alerts.jsonl'} "
                f"(dedup id {alert.dedup_id[:16]})")
    assert lines == [expected]


def test_failed_delivery_retries_with_backoff_and_never_raises(opx_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("OPX_BACKEND", "aws")
    monkeypatch.setenv("OPX_ALERTS_TOPIC_ARN", "arn:aws:sns:us-east-1:123456789012:opx-learning-operations-alerts.fifo")
    sleeps: list[float] = []
    publisher = alert_publisher(get_settings(), max_attempts=3, backoff_seconds=0.01, sleep=sleeps.append)
    assert isinstance(publisher, SnsAlertPublisher)
    assert publisher.publish(_alert()) is False
    assert sleeps == [0.01, 0.02]
    # Through the guard's hook: an unreachable SNS never fails the caller.
    publisher.hook()("INFO", "KILL_SWITCH_DISABLED", {"audit_id": "KILL_SWITCH_DISABLE#1"})


def test_sns_fifo_message_shape_and_dedup(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPX_BACKEND", "aws")
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    topic = sns.create_topic(
        Name="opx-learning-operations-alerts.fifo", Attributes={"FifoTopic": "true", "ContentBasedDeduplication": "false"}
    )["TopicArn"]
    queue = sqs.create_queue(QueueName="alerts.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    publisher = alert_publisher(get_settings())  # topic ARN resolved from the name and the caller's account
    assert publisher.topic_arn == topic
    drift = Alert("DRIFT", "P3", "CALIBRATION", {"drift": -0.2}, audit_id="CALIBRATION#9", run_id="run-9")
    assert publisher.publish(drift) and publisher.publish(drift)
    messages = sqs.receive_message(
        QueueUrl=queue, MaxNumberOfMessages=10, AttributeNames=["All"], MessageAttributeNames=["All"]
    ).get("Messages", [])
    assert len(messages) == 1
    envelope = json.loads(messages[0]["Body"])
    assert messages[0]["Attributes"]["MessageGroupId"] == "CALIBRATION"
    assert messages[0]["Attributes"]["MessageDeduplicationId"] == drift.dedup_id
    assert envelope["Subject"] == "[P3] opx-learning DRIFT: CALIBRATION"
    assert {k: v["Value"] for k, v in envelope["MessageAttributes"].items()} == {
        "OperationType": "CALIBRATION", "AlarmType": "DRIFT", "Severity": "P3"
    }
    body = json.loads(envelope["Message"])
    assert body["action"] == "ADVISORY_ONLY" and body["audit_id"] == "CALIBRATION#9" and body["run_id"] == "run-9"
    assert body["alarm"] == "DRIFT" and body["severity"] == "P3" and body["details"] == {"drift": -0.2}


def test_guard_publishes_kill_switch_changes_and_unreadable_state(opx_home: Path) -> None:
    guard = guard_for(get_settings())
    change = guard.kill_switch.disable(ADMIN, "investigating")
    guard.kill_switch.enable(ADMIN)
    guard.kill_switch.store.write_raw("{not json")
    attempt = guard.begin("PATTERN_EXTRACTION", "SCHEDULED", SYSTEM)
    assert not attempt.allowed and attempt.skip_reason == "KILL_SWITCH_UNAVAILABLE"
    alerts = [json.loads(line) for line in (opx_home / "alerts.jsonl").read_text().splitlines()]
    assert [(a["severity"], a["alarm"]) for a in alerts] == [
        ("INFO", "KILL_SWITCH_DISABLED"), ("INFO", "KILL_SWITCH_ENABLED"), ("P1", "KILL_SWITCH_UNAVAILABLE")
    ]
    assert alerts[0]["audit_id"] == change.audit_id and alerts[0]["operation"] == "KILL_SWITCH_DISABLE"
    assert alerts[2]["operation"] == "PATTERN_EXTRACTION" and alerts[2]["trigger_type"] == "SCHEDULED"
