"""The shipped IAM policies allow every AWS call the aws backend makes, and nothing it does not need.

Every botocore call made while the aws backend runs against moto's HTTP server is recorded
(service, operation, parameters), mapped to its IAM action and resource ARN, and evaluated
against the policy JSON with moto's IAM policy evaluator. Two phases: the deploy commands
(`aws init`, `seed`, `monitoring deploy`) against the admin policy, then the runtime surface
(guard, kill switch, rate limits, audit queries, outcome reads, snapshots, asset objects,
alerts, metrics, caller identity) against the runtime policy.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.client import BaseClient
from click.testing import CliRunner
from moto.iam.access_control import IAMPolicy, PermissionResult

from opx_learning.alerts.metrics import OPERATIONS_LOG_GROUP, CloudWatchMetrics
from opx_learning.alerts.models import Alert
from opx_learning.alerts.publishers import SnsAlertPublisher
from opx_learning.backends import guard_for
from opx_learning.cli.main import cli
from opx_learning.config import get_settings
from opx_learning.core.snapshots import build_snapshot
from opx_learning.core.windows import Window
from opx_learning.deploy import IAM_ADMIN_POLICY, IAM_RUNTIME_POLICY
from opx_learning.safety.models import AuthorityType, Principal
from opx_learning.safety.principals import caller_identity
from opx_learning.stores.blobs import get_bytes, put_bytes
from opx_learning.stores.outcomes import DynamoOutcomeStore, S3OutcomeStore
from opx_learning.stores.snapshots import S3SnapshotStore

ACCOUNT = "123456789012"  # moto's default account
ASSETS_BUCKET = "opx-learning-assets"
OUTCOMES_BUCKET = "opx-learning-outcomes"
ADMIN = Principal("ops-admin", AuthorityType.EMERGENCY_OVERRIDE)
PREFIX = {"DynamoDB": "dynamodb", "S3": "s3", "SNS": "sns", "STS": "sts", "CloudWatch": "cloudwatch",
          "CloudWatch Logs": "logs"}
S3_ACTIONS = {"GetObject": "GetObject", "HeadObject": "GetObject", "PutObject": "PutObject",
              "ListObjectsV2": "ListBucket", "ListObjects": "ListBucket", "HeadBucket": "ListBucket"}


@dataclass(frozen=True)
class Request:
    """One IAM authorisation request: action, resource ARN and condition context."""

    action: str
    resource: str
    context: tuple[tuple[str, str], ...] = ()


@dataclass
class Recorder:
    """Botocore calls per phase, as IAM requests."""

    phase: str | None = None
    requests: dict[str, list[Request]] = field(default_factory=lambda: {"admin": [], "runtime": []})

    def record(self, service: str, operation: str, params: dict[str, Any], region: str) -> None:
        if self.phase is not None:
            self.requests[self.phase].extend(iam_requests(service, operation, params, region))


def iam_requests(service: str, operation: str, params: dict[str, Any], region: str) -> list[Request]:
    """The IAM action(s) and resource(s) AWS authorises for one API call."""
    if service not in PREFIX:
        raise AssertionError(f"no IAM mapping for {service}:{operation}; add it here and to the policy")
    prefix = PREFIX[service]
    if prefix == "dynamodb":
        if operation == "TransactWriteItems":
            # AWS authorises a transaction as the item actions it is made of.
            actions = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
                       "ConditionCheck": "ConditionCheckItem"}
            return [Request(f"dynamodb:{actions[kind]}", f"arn:aws:dynamodb:{region}:{ACCOUNT}:table/{op['TableName']}")
                    for entry in params["TransactItems"] for kind, op in entry.items()]
        tables = list(params["RequestItems"]) if operation == "BatchWriteItem" else [params["TableName"]]
        index = f"/index/{params['IndexName']}" if params.get("IndexName") else ""
        return [Request(f"dynamodb:{operation}", f"arn:aws:dynamodb:{region}:{ACCOUNT}:table/{t}{index}") for t in tables]
    if prefix == "s3":
        if operation not in S3_ACTIONS:
            raise AssertionError(f"no IAM mapping for s3:{operation}; add it to S3_ACTIONS and to the policy")
        action = S3_ACTIONS[operation]
        target = params["Bucket"] + (f"/{params['Key']}" if action != "ListBucket" else "")
        return [Request(f"s3:{action}", f"arn:aws:s3:::{target}")]
    if prefix == "sns":
        arn = params["TopicArn"] if operation == "Publish" else f"arn:aws:sns:{region}:{ACCOUNT}:{params['Name']}"
        return [Request(f"sns:{operation}", arn)]
    if prefix == "cloudwatch":
        if operation == "PutMetricData":
            return [Request("cloudwatch:PutMetricData", "*", (("cloudwatch:namespace", params["Namespace"]),))]
        if operation == "PutDashboard":
            return [Request(f"cloudwatch:{operation}", f"arn:aws:cloudwatch::{ACCOUNT}:dashboard/{params['DashboardName']}")]
        return [Request(f"cloudwatch:{operation}", f"arn:aws:cloudwatch:{region}:{ACCOUNT}:alarm:{params['AlarmName']}")]
    if prefix == "logs":
        arn = f"arn:aws:logs:{region}:{ACCOUNT}:log-group:{params['logGroupName']}"
        if operation == "PutLogEvents":
            arn += f":log-stream:{params['logStreamName']}"
        return [Request(f"logs:{operation}", arn)]
    return [Request(f"sts:{operation}", "*")]


def decision(policy: Path, request: Request) -> PermissionResult:
    """Moto's evaluation of one request against a policy document (Deny wins, else Allow, else neutral)."""
    return IAMPolicy(policy.read_text()).is_action_permitted(
        request.action, request.resource, incoming_condition_values=dict(request.context)
    )


def not_allowed(policy: Path, requests: list[Request]) -> list[Request]:
    return sorted({r for r in requests if decision(policy, r) is not PermissionResult.PERMITTED}, key=str)


def allowed_actions(policy: Path) -> set[str]:
    actions: set[str] = set()
    for statement in json.loads(policy.read_text())["Statement"]:
        if statement["Effect"] == "Allow":
            listed = statement["Action"]
            actions.update([listed] if isinstance(listed, str) else listed)
    return actions


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorder]:
    """Record every botocore API call (paginators and waiters included) of this test."""
    recorder = Recorder()
    original = BaseClient._make_api_call

    def recording(client: BaseClient, operation: str, params: dict[str, Any]) -> Any:
        recorder.record(client.meta.service_model.service_id, operation, params, client.meta.region_name)
        return original(client, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", recording)
    yield recorder


@pytest.fixture
def aws_backend(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The aws backend with the resource names the shipped policies name; buckets made by the operator."""
    monkeypatch.setenv("OPX_BACKEND", "aws")
    monkeypatch.setenv("OPX_ASSETS_S3_URI", f"s3://{ASSETS_BUCKET}/dagster")
    monkeypatch.delenv("OPX_ALERTS_TOPIC_ARN", raising=False)
    s3 = boto3.client("s3")
    for bucket in (ASSETS_BUCKET, OUTCOMES_BUCKET):
        s3.create_bucket(Bucket=bucket)


def _deploy(recorder: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    recorder.phase = "admin"
    runner = CliRunner()
    for args in (
        ["aws", "init", "--outcomes-table"],
        ["seed", "--start", "2026-01-01", "--end", "2026-01-03", "--per-day", "20"],
        ["monitoring", "deploy"],
    ):
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, (args, result.output)
    monkeypatch.setenv("OPX_OUTCOMES_S3_URI", f"s3://{OUTCOMES_BUCKET}/outcomes")
    result = runner.invoke(cli, ["seed", "--start", "2026-01-01", "--end", "2026-01-03", "--per-day", "20"])
    assert result.exit_code == 0, result.output
    monkeypatch.delenv("OPX_OUTCOMES_S3_URI")
    recorder.phase = None
    # The runtime re-creates a deleted operations log stream itself.
    boto3.client("logs").delete_log_group(logGroupName=OPERATIONS_LOG_GROUP)


def _runtime(recorder: Recorder) -> None:
    settings = get_settings()
    recorder.phase = "runtime"
    assert caller_identity(settings).startswith(f"arn:aws:sts::{ACCOUNT}:")
    guard = guard_for(settings)
    guard.kill_switch.status()
    guard.kill_switch.disable(ADMIN, "maintenance")
    guard.kill_switch.enable(ADMIN)
    attempt = guard.begin("CALIBRATION", "MANUAL", ADMIN, {"start_date": "2026-01-01", "end_date": "2026-01-02"},
                          rate_limited=True)
    assert attempt.allowed, attempt.message
    guard.audit.attach_run(attempt.audit_id, "run-1")
    guard.succeed(attempt, {"count": 1})
    guard.audit.search(operation_type="CALIBRATION", since="2026-01-01", limit=5)
    guard.audit.search(status="RUNNING")
    guard.audit.complete_stale(lambda record: True)
    window = Window(datetime(2026, 1, 1, 6, tzinfo=UTC), datetime(2026, 1, 2, 18, tzinfo=UTC))
    assert DynamoOutcomeStore(settings.outcomes_table, region=settings.region).read(window).height > 0
    s3_outcomes = S3OutcomeStore(f"s3://{OUTCOMES_BUCKET}/outcomes")
    assert s3_outcomes.read(window).height > 0
    s3_outcomes.days()
    snapshots = S3SnapshotStore(settings=settings)
    frame = DynamoOutcomeStore(settings.outcomes_table, region=settings.region).read(window)
    snapshots.append(build_snapshot("CUSTOM", window.start, window.end, frame, None))
    assert snapshots.latest("CUSTOM", window.start, window.end) is not None
    put_bytes(f"s3://{ASSETS_BUCKET}/dagster/pattern_summaries_daily/2026-01-01", b"asset")
    assert get_bytes(f"s3://{ASSETS_BUCKET}/dagster/pattern_summaries_daily/2026-01-01") == b"asset"
    assert SnsAlertPublisher(settings).publish(Alert("IAM_POLICY_TEST", "INFO", "CALIBRATION", audit_id="x"))
    assert CloudWatchMetrics(settings).record(guard.audit.get(attempt.audit_id))
    recorder.phase = None


def test_every_call_of_the_aws_backend_is_allowed_by_the_shipped_policies(
    aws_backend: None, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    _deploy(recorder, monkeypatch)
    _runtime(recorder)
    admin, runtime = recorder.requests["admin"], recorder.requests["runtime"]
    assert not_allowed(IAM_ADMIN_POLICY, admin) == []
    assert not_allowed(IAM_RUNTIME_POLICY, runtime) == []
    used = {r.action for r in runtime}
    # The exercise reaches every store and channel, and the runtime policy grants nothing unused.
    assert {"dynamodb:PutItem", "dynamodb:Query", "s3:PutObject", "sns:Publish", "cloudwatch:PutMetricData",
            "logs:PutLogEvents", "sts:GetCallerIdentity"} <= used
    assert allowed_actions(IAM_RUNTIME_POLICY) == used


def test_the_runtime_policy_refuses_what_the_runtime_must_not_do() -> None:
    audit = "arn:aws:dynamodb:us-east-1:123456789012:table/opx-automation-audit"
    config = "arn:aws:dynamodb:us-east-1:123456789012:table/opx-automation-config"
    for action in ("dynamodb:DeleteItem", "dynamodb:BatchWriteItem", "dynamodb:DeleteTable", "dynamodb:PartiQLDelete"):
        assert decision(IAM_RUNTIME_POLICY, Request(action, audit)) is PermissionResult.DENIED
        assert decision(IAM_ADMIN_POLICY, Request(action, audit)) is PermissionResult.DENIED
    for request in (
        Request("dynamodb:UpdateItem", audit),
        Request("dynamodb:Scan", audit),
        Request("dynamodb:DeleteItem", config),
        Request("dynamodb:UpdateTable", audit),
        Request("dynamodb:UpdateContinuousBackups", audit),
        Request("dynamodb:PutItem", "arn:aws:dynamodb:us-east-1:123456789012:table/opx-outcomes"),
        Request("s3:PutObject", f"arn:aws:s3:::{OUTCOMES_BUCKET}/outcomes/x"),
        Request("s3:DeleteObject", f"arn:aws:s3:::{ASSETS_BUCKET}/dagster/x"),
        Request("sns:Publish", "arn:aws:sns:us-east-1:123456789012:someone-else"),
        Request("cloudwatch:PutMetricData", "*", (("cloudwatch:namespace", "Other"),)),
    ):
        assert decision(IAM_RUNTIME_POLICY, request) is not PermissionResult.PERMITTED, request
