"""The hash chains on the aws backend: DynamoDB items edited, rolled back or re-created behind the store's back are caught.

boto3 against moto's HTTP server; the tampering is done with a plain DynamoDB client, as an
operator with console access would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest

from opx_learning.backends import guard_for, threshold_review_for
from opx_learning.config import get_settings
from opx_learning.core.windows import Window
from opx_learning.integrity.sweep import run_sweep
from opx_learning.safety.chain import ChainTampered, StateMismatch
from opx_learning.safety.models import AuthorityType, Principal
from opx_learning.safety.state import adopt
from opx_learning.safety.threshold_store import (
    ProposalStatus,
    ThresholdProposal,
    ThresholdSet,
)

ADMIN = Principal("ops-admin", AuthorityType.EMERGENCY_OVERRIDE)
SRE = Principal("alice", AuthorityType.ON_CALL_SRE)
CONFIG = "opx-automation-config"
AUDIT = "opx-automation-audit"
ANCHOR = "assets/integrity/chain-anchor.json"


@pytest.fixture
def aws_state(aws_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Initialised tables with the chain heads anchored under `s3://opx/assets`."""
    from opx_learning.safety.dynamo_backend import create_tables
    from opx_learning.safety.state import initialise
    from opx_learning_tests.safety.conftest import _atomic_moto_writes

    _atomic_moto_writes(monkeypatch)
    boto3.client("s3").create_bucket(Bucket="opx")
    monkeypatch.setenv("OPX_BACKEND", "aws")
    monkeypatch.setenv("OPX_ASSETS_S3_URI", "s3://opx/assets")
    principals = tmp_path / "principals.yaml"
    principals.write_text("principals:\n  ops-admin:\n    authority: EMERGENCY_OVERRIDE\n")
    monkeypatch.setenv("OPX_PRINCIPALS", str(principals))
    create_tables(get_settings())
    initialise(get_settings())
    return boto3.client("dynamodb")


def _tampered(problem: str) -> bool:
    report = run_sweep(Window.parse("2020-01-01", "2100-01-01"), get_settings())
    return any(f.alarm == "AUDIT_TAMPERED" and problem in f.problem for f in report.findings)


def test_kill_switch_item_edited_after_an_audited_disable_refuses(aws_state: Any) -> None:
    guard = guard_for(get_settings(), on_alert=lambda *args: None)
    guard.kill_switch.disable(ADMIN, "incident")
    assert guard.kill_switch.status().active
    aws_state.update_item(TableName=CONFIG, Key={"PK": {"S": "CONFIG#KILL_SWITCH"}, "SK": {"S": "METADATA"}},
                          UpdateExpression="SET enabled = :t", ExpressionAttributeValues={":t": {"BOOL": True}})
    with pytest.raises(StateMismatch, match="says ENABLED .* but the last kill-switch audit record"):
        guard.kill_switch.status()
    attempt = guard.begin("CALIBRATION", "MANUAL", SRE)
    assert not attempt.allowed and attempt.skip_reason == "STATE_MISMATCH"
    status = subprocess.run([sys.executable, "-m", "opx_learning.cli.main", "kill-switch", "status"],
                            capture_output=True, text=True, env=dict(os.environ), timeout=300, check=False)
    assert status.returncode == 1 and "STATE_MISMATCH" in status.stderr

    with pytest.raises(Exception, match="INSUFFICIENT_AUTHORITY"):
        adopt(get_settings(), SRE, on_alert=lambda *args: None)
    adopted = adopt(get_settings(), ADMIN, on_alert=lambda *args: None)
    assert adopted.status == "ADOPTED" and adopted.state is not None and adopted.state.enabled
    assert guard.kill_switch.status().enabled
    record = guard.audit.get(adopted.audit_id)
    assert record is not None and record.parameters["action"] == "ADOPT"
    assert record.results["new_head"]["audit"]["seq"] >= record.results["old_head"]["audit"]["seq"]


def test_a_running_record_rewritten_to_success_is_detected(aws_state: Any) -> None:
    guard = guard_for(get_settings(), on_alert=lambda *args: None)
    attempt = guard.begin("CALIBRATION", "MANUAL", SRE)
    assert not _tampered("changed after its last link")
    aws_state.update_item(TableName=AUDIT, Key={"PK": {"S": f"AUDIT#{attempt.audit_id}"}, "SK": {"S": "METADATA"}},
                          UpdateExpression="SET #s = :s, results = :r",
                          ExpressionAttributeNames={"#s": "status"},
                          ExpressionAttributeValues={":s": {"S": "SUCCESS"}, ":r": {"M": {"made": {"S": "up"}}}})
    assert _tampered(f"audit record {attempt.audit_id} was changed after its last link")


def test_rolled_back_and_recreated_tables_refuse(aws_state: Any) -> None:
    guard = guard_for(get_settings(), on_alert=lambda *args: None)
    guard.kill_switch.disable(ADMIN, "incident")
    guard.kill_switch.enable(ADMIN)
    anchor = json.loads(boto3.client("s3").get_object(Bucket="opx", Key=ANCHOR)["Body"].read())
    assert anchor["heads"]["audit"]["seq"] == 4
    # Roll the chain back to link 2, as a restore of an older table copy would.
    for seq in (3, 4):
        aws_state.delete_item(TableName=CONFIG, Key={"PK": {"S": "CHAIN#audit"}, "SK": {"S": f"SEQ#{seq:012d}"}})
    with pytest.raises(StateMismatch, match="rolled back to an older copy"):
        guard.kill_switch.status()
    assert _tampered("rolled back")
    aws_state.put_item(TableName=CONFIG, Item={"PK": {"S": "CHAIN#META"}, "SK": {"S": "METADATA"},
                                               "stateId": {"S": "another"}, "anchored": {"BOOL": True}})
    with pytest.raises(StateMismatch, match="swapped or re-created"):
        guard_for(get_settings(), on_alert=lambda *args: None).kill_switch.status()


def test_a_forged_threshold_version_is_not_served(aws_state: Any) -> None:
    review = threshold_review_for(get_settings())
    store = review.store
    proposal = ThresholdProposal("tp-0000000001", ProposalStatus.PENDING, {"0.5": 0.4}, {}, SRE,
                                 review.audit.start("THRESHOLD_PROPOSAL", "MANUAL", SRE).start_time, "a-1")
    store.create(proposal)
    approved = ThresholdSet(1, {"0.5": 0.4}, proposal.proposal_id, ADMIN, proposal.proposed_at, SRE, "a-2")
    decided = ThresholdProposal(proposal.proposal_id, ProposalStatus.APPROVED, {"0.5": 0.4}, {}, SRE,
                                proposal.proposed_at, "a-1", decided_by=ADMIN, version=1)
    assert store.decide(decided, approved, 0)
    assert store.current() is not None and store.current().version == 1
    forged = {**approved.to_dict(), "version": 2, "thresholds": {"0.5": 0.1}}
    doc = {"S": json.dumps(forged, sort_keys=True)}
    aws_state.put_item(TableName=CONFIG, Item={"PK": {"S": "CONFIG#THRESHOLDS"}, "SK": {"S": "METADATA"},
                                               "version": {"N": "2"}, "doc": doc})
    aws_state.put_item(TableName=CONFIG, Item={"PK": {"S": "THRESHOLDS#VERSIONS"}, "SK": {"S": "VERSION#00000002"},
                                               "version": {"N": "2"}, "doc": doc})
    with pytest.raises(ChainTampered, match="threshold version 2 .* has no link"):
        store.current()
    assert _tampered("threshold version 2 has no link")


def test_a_deleted_anchor_object_refuses(aws_state: Any) -> None:
    guard = guard_for(get_settings(), on_alert=lambda *args: None)
    assert guard.kill_switch.status().enabled
    boto3.client("s3").delete_object(Bucket="opx", Key=ANCHOR)
    with pytest.raises(StateMismatch, match="chain-anchor.json is missing"):
        guard.kill_switch.status()
    assert adopt(get_settings(), ADMIN, on_alert=lambda *args: None).status == "ADOPTED"
    assert guard.kill_switch.status().enabled
