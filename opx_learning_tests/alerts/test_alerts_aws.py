"""CloudWatch metrics from the guard and `monitoring deploy`, against moto's HTTP server."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import boto3
import pytest
from click.testing import CliRunner

from opx_learning.alerts.dashboard import ensure_alert_topic
from opx_learning.backends import guard_for
from opx_learning.cli.main import cli
from opx_learning.config import get_settings
from opx_learning.safety.audit import utcnow
from opx_learning.safety.dynamo_backend import create_tables
from opx_learning.safety.models import SYSTEM, Principal
from opx_learning.safety.state import initialise


@pytest.fixture
def aws_backend(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The aws backend on moto with the audit and config tables and the ENABLED kill switch (as `aws init` leaves them)."""
    monkeypatch.setenv("OPX_BACKEND", "aws")
    create_tables(get_settings())
    initialise(get_settings())
    ensure_alert_topic(get_settings())
    return aws_env


def _sum(cloudwatch, metric: str, dimensions: list[dict]) -> float:
    now = utcnow()
    points = cloudwatch.get_metric_statistics(
        Namespace="LearningOperations", MetricName=metric, Dimensions=dimensions,
        StartTime=now - timedelta(hours=1), EndTime=now + timedelta(minutes=5), Period=3600, Statistics=["Sum"],
    )["Datapoints"]
    return sum(p["Sum"] for p in points)


def test_completed_records_publish_cloudwatch_metrics(aws_backend: str) -> None:
    guard = guard_for(get_settings())
    ok = guard.begin("CALIBRATION", "SCHEDULED", SYSTEM, {"start_date": "2026-02-01", "end_date": "2026-03-01"})
    guard.succeed(ok, {"outcome_count": 240, "skipped_count": 7, "drift": -0.18, "max_abs_drift": 0.18})
    bad = guard.begin("PATTERN_EXTRACTION", "SCHEDULED", SYSTEM)
    guard.fail(bad, "boom")
    guard.kill_switch.disable(Principal("ops-admin", "EMERGENCY_OVERRIDE"), "test")
    skipped = guard.begin("SNAPSHOT", "SCHEDULED", SYSTEM, {"snapshot_type": "DAILY"})
    assert skipped.skip_reason == "KILL_SWITCH_ACTIVE"
    cloudwatch = boto3.client("cloudwatch")

    def dims(operation: str) -> list[dict]:
        return [{"Name": "OperationType", "Value": operation}, {"Name": "TriggerType", "Value": "SCHEDULED"}]

    calibration = dims("CALIBRATION")
    assert _sum(cloudwatch, "Success", calibration) == 1 and _sum(cloudwatch, "Failure", calibration) == 0
    assert _sum(cloudwatch, "OutcomeCount", calibration) == 240 and _sum(cloudwatch, "SkippedCount", calibration) == 7
    assert _sum(cloudwatch, "RecordsProcessed", calibration) == 240
    assert _sum(cloudwatch, "Drift", calibration) == pytest.approx(-0.18)
    patterns = dims("PATTERN_EXTRACTION")
    assert _sum(cloudwatch, "Failure", patterns) == 1 and _sum(cloudwatch, "Success", patterns) == 0
    assert _sum(cloudwatch, "KillSwitchBlocked", dims("SNAPSHOT")) == 1
    dimension_sets = {
        tuple(d["Name"] for d in m["Dimensions"])
        for m in cloudwatch.list_metrics(Namespace="LearningOperations", MetricName="Success")["Metrics"]
    }
    assert dimension_sets == {("OperationType", "TriggerType"), ("OperationType",)}
    names = {m["MetricName"] for m in cloudwatch.list_metrics(Namespace="LearningOperations")["Metrics"]}
    assert names == {"Success", "Failure", "Duration", "OutcomeCount", "SkippedCount", "RecordsProcessed", "Drift", "KillSwitchBlocked"}
    events = boto3.client("logs").get_log_events(logGroupName="/opx-learning/operations", logStreamName="audit")["events"]
    assert [json.loads(e["message"])["status"] for e in events] == ["SUCCESS", "FAILED", "SKIPPED"]


def test_metrics_failure_never_fails_the_operation(opx_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from opx_learning.alerts.metrics import CloudWatchMetrics

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    sink = CloudWatchMetrics(get_settings(), attempts=2, backoff_seconds=0.001)
    guard = guard_for(get_settings(), on_complete=sink)
    attempt = guard.begin("SNAPSHOT", "SCHEDULED", SYSTEM, {"snapshot_type": "DAILY"})
    assert guard.succeed(attempt).status == "SUCCESS"
    assert sink.record(guard.audit.get(attempt.audit_id)) is False


def test_monitoring_deploy_is_idempotent(aws_backend: str) -> None:
    runner = CliRunner()
    first = runner.invoke(cli, ["monitoring", "deploy", "--json"])
    assert first.exit_code == 0, first.output
    second = runner.invoke(cli, ["monitoring", "deploy", "--json"])
    assert second.exit_code == 0, second.output
    report = json.loads(second.output)
    assert report == json.loads(first.output)
    assert len(report["rows"]) == 6 and report["rows"][5] == ["Last 20 operations"]
    cloudwatch, sns = boto3.client("cloudwatch"), boto3.client("sns")
    body = json.loads(cloudwatch.get_dashboard(DashboardName="opx-learning-operations")["DashboardBody"])
    assert sorted({w["y"] for w in body["widgets"]}) == [0, 6, 12, 18, 24, 30]
    error_rate = next(w for w in body["widgets"] if w["properties"]["title"] == "Calibration error rate (%)")
    assert error_rate["properties"]["annotations"]["horizontal"][0]["value"] == 10
    drift = next(w for w in body["widgets"] if w["properties"]["title"] == "Calibration drift over time")
    assert [a["value"] for a in drift["properties"]["annotations"]["horizontal"]] == [0.15, -0.15]
    alarms = cloudwatch.describe_alarms(AlarmNamePrefix="opx-learning-")
    names = sorted(a["AlarmName"] for a in alarms["MetricAlarms"])
    assert names == sorted(a["name"] for a in report["alarms"]) and len(names) == 18 + 3  # + 3 sensor heartbeats
    assert "opx-learning-calibration-failure" in names and "opx-learning-significant-drift" in names
    topics = [t["TopicArn"] for t in sns.list_topics()["Topics"]]
    assert report["alert_topic_arn"].endswith(":opx-learning-operations-alerts.fifo") and report["alert_topic_arn"] in topics
    attributes = sns.get_topic_attributes(TopicArn=report["alert_topic_arn"])["Attributes"]
    assert attributes["FifoTopic"] == "true"
    human = runner.invoke(cli, ["monitoring", "deploy"])
    assert human.exit_code == 0 and "row 6: Last 20 operations" in human.output


def test_monitoring_deploy_needs_the_aws_backend(opx_home: Path) -> None:
    result = CliRunner().invoke(cli, ["monitoring", "deploy"])
    assert result.exit_code == 2 and "OPX_BACKEND=aws" in result.output
