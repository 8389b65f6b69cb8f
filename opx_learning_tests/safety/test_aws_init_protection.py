"""`opx-learning aws init` protects the audit and config tables (moto over HTTP): deletion protection, PITR."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.exceptions import ClientError
from click.testing import CliRunner

from opx_learning.cli.main import cli

TABLES = ("opx-automation-audit", "opx-automation-config")


def _protection(client, name: str) -> tuple[bool, str]:
    table = client.describe_table(TableName=name)["Table"]
    backups = client.describe_continuous_backups(TableName=name)["ContinuousBackupsDescription"]
    return bool(table.get("DeletionProtectionEnabled")), backups["PointInTimeRecoveryDescription"][
        "PointInTimeRecoveryStatus"
    ]


def test_aws_init_protects_new_tables_and_says_so(aws_env: str) -> None:
    result = CliRunner().invoke(cli, ["aws", "init"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    for name in TABLES:
        assert f"{name}: CREATED, deletion protection turned on, point-in-time recovery turned on" in result.output
    client = boto3.client("dynamodb")
    for name in TABLES:
        assert _protection(client, name) == (True, "ENABLED")
        with pytest.raises(ClientError, match="DeletionProtectionEnabled"):
            client.delete_table(TableName=name)
    again = CliRunner().invoke(cli, ["aws", "init", "--json"], catch_exceptions=False)
    assert again.exit_code == 0
    assert json.loads(again.output) == {
        **{
            name: {"table": "EXISTS", "deletion_protection": "ALREADY_ENABLED", "point_in_time_recovery": "ALREADY_ENABLED"}
            for name in TABLES
        },
        "opx-automation-config/CONFIG#KILL_SWITCH": {"item": "EXISTS"},
    }


def test_aws_init_protects_tables_that_already_exist(aws_env: str) -> None:
    client = boto3.client("dynamodb")
    keys = {
        "KeySchema": [{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}],
        "AttributeDefinitions": [
            {"AttributeName": "PK", "AttributeType": "S"},
            {"AttributeName": "SK", "AttributeType": "S"},
        ],
        "BillingMode": "PAY_PER_REQUEST",
    }
    client.create_table(TableName="opx-automation-config", **keys)
    assert _protection(client, "opx-automation-config") == (False, "DISABLED")
    result = CliRunner().invoke(cli, ["aws", "init", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    done = json.loads(result.output)
    assert done["opx-automation-config"] == {
        "table": "EXISTS", "deletion_protection": "ENABLED", "point_in_time_recovery": "ENABLED"
    }
    assert done["opx-automation-audit"]["table"] == "CREATED"
    for name in TABLES:
        assert _protection(client, name) == (True, "ENABLED")
