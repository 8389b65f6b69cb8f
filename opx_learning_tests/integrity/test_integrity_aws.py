"""The integrity sweep on the aws backend (moto's server): S3 snapshots and outcomes, DynamoDB audit, SNS."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest

from opx_learning.config import get_settings
from opx_learning.core.snapshots import build_snapshot
from opx_learning.core.synthetic import generate_outcomes
from opx_learning.core.windows import Window
from opx_learning.integrity.findings import IntegrityError
from opx_learning.integrity.sweep import run_sweep
from opx_learning.safety.dynamo_backend import create_tables, open_dynamo
from opx_learning.safety.models import Principal
from opx_learning.stores.outcomes import outcome_store
from opx_learning.stores.snapshots import snapshot_store
from opx_learning_tests import wiring

START, END = "2025-10-01", "2025-10-04"
DAY_DIR = "2025-10-02T000000.000Z_2025-10-03T000000.000Z"


@pytest.fixture
def aws_home(aws_env: str, opx_home: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="opx")
    monkeypatch.setenv("OPX_BACKEND", "aws")
    monkeypatch.setenv("OPX_ASSETS_S3_URI", "s3://opx/assets")
    monkeypatch.setenv("OPX_OUTCOMES_S3_URI", "s3://opx/outcomes")
    boto3.client("sns", region_name="us-east-1").create_topic(
        Name="opx-learning-operations-alerts.fifo", Attributes={"FifoTopic": "true"}
    )
    create_tables(get_settings())
    frame = generate_outcomes(START, END, per_day=6, seed=5)
    outcome_store(wiring.settings()).write(frame)
    snapshot_store(wiring.settings()).append(build_snapshot("DAILY", "2025-10-02", "2025-10-03", frame, []))
    audit = open_dynamo(get_settings())[0]
    record = audit.start("SNAPSHOT", "MANUAL", Principal("alice"))
    audit.complete(record.audit_id, "FAILED", error_message="boom")
    return "opx"


def test_aws_sweep_clean_then_finds_s3_and_dynamodb_damage(aws_home: str) -> None:
    window = Window.parse(START, "2026-12-31")
    clean = run_sweep(window, wiring.settings())
    assert clean.clean, clean.findings
    assert clean.checked["snapshots"] == 1 and clean.checked["outcomes"] == 3 and clean.checked["audit"] == 1
    assert clean.locations["snapshots"] == "s3://opx/assets/snapshots/"

    s3 = boto3.client("s3", region_name="us-east-1")
    key = f"assets/snapshots/DAILY/{DAY_DIR}/v1.json"
    body = bytearray(s3.get_object(Bucket="opx", Key=key)["Body"].read())
    body[len(body) // 2] ^= 0x01
    s3.put_object(Bucket="opx", Key=key, Body=bytes(body))
    outcome_key = "outcomes/recorded_date=2025-10-03/part-0.parquet"
    data = s3.get_object(Bucket="opx", Key=outcome_key)["Body"].read()
    s3.put_object(Bucket="opx", Key=outcome_key, Body=data[: len(data) // 2])
    boto3.client("dynamodb", region_name="us-east-1").put_item(
        TableName=get_settings().audit_table,
        Item={
            "PK": {"S": "AUDIT#CALIBRATION#forged"}, "SK": {"S": "METADATA"}, "auditId": {"S": "CALIBRATION#forged"},
            "operationType": {"S": "CALIBRATION"}, "triggerType": {"S": "MANUAL"}, "status": {"S": "DONE"},
            "startTime": {"S": "2025-10-02T00:00:00.000Z"}, "version": {"N": "1"},
            "triggeredBy": {"M": {"type": {"S": "HUMAN_OPERATOR"}, "principal": {"S": "mallory"}}},
        },
    )

    with pytest.raises(IntegrityError, match=f"s3://opx/{key}"):
        snapshot_store(wiring.settings()).list()
    report = run_sweep(window, wiring.settings())
    assert sorted((f.store, f.location) for f in report.findings) == [
        ("audit", "dynamodb://opx-automation-audit/AUDIT#CALIBRATION#forged"),
        ("audit", "dynamodb://opx-automation-config#audit record CALIBRATION#forged"),
        ("outcomes", f"s3://opx/{outcome_key}"),
        ("snapshots", f"s3://opx/{key}"),
    ]
    tampered = [f for f in report.findings if f.alarm == "AUDIT_TAMPERED"]
    assert len(tampered) == 1 and "CALIBRATION#forged has no link in the audit chain" in tampered[0].problem
    audit_finding = next(f for f in report.findings if f.store == "audit" and f.alarm == "DATA_CORRUPTION")
    assert "status 'DONE' is not one of" in audit_finding.problem
    assert report.alert_delivered is True


def test_aws_manifest_lives_in_the_config_table_and_is_compared_both_ways(aws_home: str) -> None:
    import polars as pl

    from opx_learning.backends import backend_for

    storage = backend_for(wiring.settings()).asset_storage()
    storage.write("pattern_summaries_daily", "2025-10-02", pl.DataFrame({"service": ["a"], "n": [3]}))
    dynamo = boto3.client("dynamodb", region_name="us-east-1")
    items = dynamo.query(
        TableName=get_settings().config_table, KeyConditionExpression="PK = :pk",
        ExpressionAttributeValues={":pk": {"S": "MANIFEST#assets"}},
    )["Items"]
    s3 = boto3.client("s3", region_name="us-east-1")
    body = s3.get_object(Bucket="opx", Key="assets/pattern_summaries_daily/2025-10-02.parquet")["Body"].read()
    import hashlib

    assert [(i["objectKey"]["S"], i["sha256"]["S"]) for i in items] == [
        ("pattern_summaries_daily/2025-10-02.parquet", hashlib.sha256(body).hexdigest())
    ]
    s3.delete_object(Bucket="opx", Key="assets/pattern_summaries_daily/2025-10-02.parquet")
    s3.put_object(Bucket="opx", Key="assets/pattern_summaries_daily/2025-10-03.parquet", Body=body)
    with pytest.raises(IntegrityError, match="not in the manifest"):
        storage.read("pattern_summaries_daily", "2025-10-03")
    report = run_sweep(Window.parse(START, "2026-12-31"), wiring.settings())
    found = {(f.location, f.problem.split(":")[0].split(" (")[0]) for f in report.findings}
    assert found == {
        ("s3://opx/assets/pattern_summaries_daily/2025-10-02.parquet", "listed in the manifest"),
        ("s3://opx/assets/pattern_summaries_daily/2025-10-03.parquet", "not in the manifest of stored objects"),
    }
    assert len(report.alerts) == 2 and report.alert_delivered is True
