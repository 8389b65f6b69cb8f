"""`opx-learning kill-switch | audit | aws` commands."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from opx_learning.cli.main import cli


@pytest.fixture
def run(opx_home, tmp_path, monkeypatch):
    path = tmp_path / "principals.yaml"
    path.write_text("principals:\n  ops-admin:\n    authority: EMERGENCY_OVERRIDE\n")
    monkeypatch.setenv("OPX_PRINCIPALS", str(path))
    monkeypatch.setenv("OPX_PRINCIPAL", "bob")
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(cli, list(args), catch_exceptions=False)

    return invoke


def test_status_json_uses_rest_names(run, opx_home) -> None:
    result = run("kill-switch", "status", "--json")
    assert result.exit_code == 0
    body = json.loads(result.output)
    assert body.pop("lastModified").endswith("Z")  # written by the initialisation
    assert body == {
        "active": False, "enabled": True, "disabledAt": None, "disabledBy": None, "reason": None,
        "store": f"local: {opx_home / 'state.db'}",
    }
    assert "inactive" in run("kill-switch", "status").output


def test_disable_requires_reason(run) -> None:
    result = run("kill-switch", "disable", "--principal", "ops-admin")
    assert result.exit_code == 2 and "Missing option '--reason'" in result.output
    blank = run("kill-switch", "disable", "--reason", " ", "--principal", "ops-admin")
    assert blank.exit_code == 2 and "reason: a reason is required" in blank.output


def test_refused_disable_exits_1_and_is_audited(run) -> None:
    result = run("kill-switch", "disable", "--reason", "try")
    assert result.exit_code == 1 and "INSUFFICIENT_AUTHORITY" in result.output
    listed = json.loads(run("audit", "list", "--operation", "KILL_SWITCH_DISABLE", "--json").output)
    assert len(listed) == 1 and listed[0]["status"] == "SKIPPED"
    assert listed[0]["triggered_by"] == {"type": "HUMAN_OPERATOR", "principal": "bob"}
    assert listed[0]["results"]["skip_reason"] == "INSUFFICIENT_AUTHORITY"


def test_disable_until_enable_and_audit_commands(run) -> None:
    result = run("kill-switch", "disable", "--reason", "incident", "--until", "2099-01-01T00:00:00Z",
                 "--principal", "ops-admin", "--json")
    assert result.exit_code == 0
    body = json.loads(result.output)
    assert body["status"] == "DISABLED" and body["auditId"].startswith("KILL_SWITCH_DISABLE#")
    status = json.loads(run("kill-switch", "status", "--json").output)
    assert status["active"] and status["until"] == "2099-01-01T00:00:00.000Z"
    assert status["disabledBy"] == {"type": "EMERGENCY_OVERRIDE", "identifier": "ops-admin"}
    assert "re-enables at: 2099-01-01" in run("kill-switch", "status").output

    record = json.loads(run("audit", "get", body["auditId"], "--json").output)
    assert set(record) == {
        "audit_id", "operation_type", "trigger_type", "status", "start_time", "end_time", "duration_ms",
        "parameters", "results", "error_message", "triggered_by", "run_id", "version",
    }
    assert record["status"] == "SUCCESS" and record["parameters"]["reason"] == "incident"
    assert body["auditId"] in run("audit", "get", body["auditId"]).output

    assert run("kill-switch", "enable", "--principal", "ops-admin").exit_code == 0
    table = run("audit", "list", "--limit", "5").output
    assert "KILL_SWITCH_ENABLE" in table.splitlines()[1] and "AUDIT ID" in table.splitlines()[0]
    assert len(json.loads(run("audit", "list", "--status", "success", "--json").output)) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("audit", "list", "--operation", "MERGE"), "operation: 'MERGE'"),
        (("audit", "list", "--status", "DONE"), "status: 'DONE'"),
        (("audit", "list", "--since", "2026-02-01", "--until", "2026-01-01"), "until"),
        (("audit", "list", "--limit", "0"), "--limit"),
        (("kill-switch", "disable", "--reason", "x", "--until", "2001-01-01", "--principal", "ops-admin"), "future"),
    ],
)
def test_bad_arguments_are_usage_errors(run, args, message) -> None:
    result = run(*args)
    assert result.exit_code == 2 and message in result.output


def test_audit_get_unknown(run) -> None:
    result = run("audit", "get", "CALIBRATION#nope")
    assert result.exit_code == 1 and "no audit record" in result.output


def test_aws_init_is_idempotent(aws_env) -> None:
    runner = CliRunner()
    first = runner.invoke(cli, ["aws", "init", "--json"], catch_exceptions=False)
    assert first.exit_code == 0
    protected = {"deletion_protection": "ENABLED", "point_in_time_recovery": "ENABLED"}
    assert json.loads(first.output) == {
        "opx-automation-audit": {"table": "CREATED", **protected},
        "opx-automation-config": {"table": "CREATED", **protected},
        "opx-automation-config/CONFIG#KILL_SWITCH": {"item": "CREATED"},
    }
    second = runner.invoke(cli, ["aws", "init", "--outcomes-table"], catch_exceptions=False)
    assert second.exit_code == 0 and "opx-automation-audit: EXISTS" in second.output
    assert "opx-automation-config/CONFIG#KILL_SWITCH: EXISTS" in second.output
    assert "opx-outcomes: CREATED" in second.output

    import boto3

    table = boto3.client("dynamodb").describe_table(TableName="opx-automation-audit")["Table"]
    assert [k["AttributeName"] for k in table["KeySchema"]] == ["PK", "SK"]
    index = table["GlobalSecondaryIndexes"][0]
    assert index["IndexName"] == "OperationTypeIndex"
    assert [k["AttributeName"] for k in index["KeySchema"]] == ["operationType", "startTime"]


def test_cli_on_aws_backend(aws_env, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("OPX_BACKEND", "aws")
    runner = CliRunner()
    assert runner.invoke(cli, ["aws", "init"]).exit_code == 0
    refused = runner.invoke(cli, ["kill-switch", "disable", "--reason", "x", "--principal", "bob"])
    assert refused.exit_code == 1 and "INSUFFICIENT_AUTHORITY" in refused.output
    listed = json.loads(runner.invoke(cli, ["audit", "list", "--json"]).output)
    assert [r["operation_type"] for r in listed] == ["KILL_SWITCH_DISABLE"]


def test_audit_list_says_when_more_records_match(run) -> None:
    for _ in range(3):
        assert run("kill-switch", "disable", "--reason", "drill", "--principal", "ops-admin").exit_code == 0
        assert run("kill-switch", "enable", "--principal", "ops-admin").exit_code == 0
    hint = "showing the 5 most recent matching records; more exist: raise --limit or narrow with --since/--until"
    table = run("audit", "list", "--limit", "5").output.splitlines()
    assert len(table) == 1 + 5 + 1 and table[-1] == hint
    assert hint not in run("audit", "list", "--limit", "6").output
    listed = run("audit", "list", "--limit", "2", "--json")
    assert len(json.loads(listed.stdout)) == 2 and listed.stderr.strip() == hint.replace("5", "2", 1)
