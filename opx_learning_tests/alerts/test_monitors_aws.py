"""Heartbeat metric and heartbeat alarms on the aws backend, against moto's HTTP server."""

from __future__ import annotations

import json
from datetime import timedelta

import boto3
import dagster as dg
import pytest
from click.testing import CliRunner

from opx_learning.alerts.dashboard import ensure_alert_topic
from opx_learning.cli.main import cli
from opx_learning.config import get_settings
from opx_learning.safety.audit import utcnow
from opx_learning.safety.dynamo_backend import create_tables
from opx_learning.safety.state import initialise
from opx_learning_tests.wiring import location, resource

SENSORS = ["audit_run_terminated_sensor", "monitors_watchdog_sensor", "operations_alert_sensor"]


@pytest.fixture
def aws_backend(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The aws backend on moto with the audit and config tables and the ENABLED kill switch (as `aws init` leaves them)."""
    monkeypatch.setenv("OPX_BACKEND", "aws")
    create_tables(get_settings())
    initialise(get_settings())
    ensure_alert_topic(get_settings())
    return aws_env


def test_sensor_tick_puts_the_heartbeat_metric(aws_backend: str) -> None:
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(
            instance=instance, resources={"safety": resource("safety"), "alerts": resource("alerts")}
        )
        location().resolve_sensor_def("audit_run_terminated_sensor").evaluate_tick(context)
    now = utcnow()
    points = boto3.client("cloudwatch").get_metric_statistics(
        Namespace="LearningOperations", MetricName="Heartbeat",
        Dimensions=[{"Name": "SensorName", "Value": "audit_run_terminated_sensor"}],
        StartTime=now - timedelta(minutes=10), EndTime=now + timedelta(minutes=1), Period=60, Statistics=["Sum"],
    )["Datapoints"]
    assert sum(point["Sum"] for point in points) == 1


def test_monitoring_deploy_adds_a_heartbeat_alarm_per_sensor(aws_backend: str) -> None:
    runner = CliRunner()
    for _ in range(2):  # idempotent: the second deploy updates the same alarms
        result = runner.invoke(cli, ["monitoring", "deploy", "--json"])
        assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    cloudwatch = boto3.client("cloudwatch")
    alarms = cloudwatch.describe_alarms(AlarmNamePrefix="opx-learning-heartbeat-")["MetricAlarms"]
    assert sorted(a["AlarmName"] for a in alarms) == [f"opx-learning-heartbeat-{s.replace('_', '-')}" for s in SENSORS]
    assert {a["name"] for a in report["alarms"]} >= {a["AlarmName"] for a in alarms}
    for alarm in alarms:
        sensor = alarm["Dimensions"][0]["Value"]
        assert alarm["Dimensions"] == [{"Name": "SensorName", "Value": sensor}] and sensor in SENSORS
        assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"]) == ("LearningOperations", "Heartbeat", "Sum")
        assert alarm["TreatMissingData"] == "breaching"
        assert (alarm["Period"], alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (60, 5, 5)
        assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("LessThanThreshold", 1.0)
        assert alarm["AlarmActions"] == [report["alarm_topic_arn"]] and alarm["ActionsEnabled"]
        assert alarm["AlarmDescription"].startswith("P1: MONITOR_STALE")
