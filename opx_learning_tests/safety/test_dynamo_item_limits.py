"""No audit item on DynamoDB (moto over HTTP) exceeds the 400 KB item limit; oversized text is clipped visibly."""

from __future__ import annotations

from typing import Any

import pytest

from opx_learning.config import get_settings
from opx_learning.safety.dynamo_backend import (
    DynamoAuditLog,
    create_tables,
    dynamo_client,
    open_dynamo,
)
from opx_learning.safety.models import AuditStatus, AuthorityType, Principal

ADMIN = Principal("ops-admin", AuthorityType.EMERGENCY_OVERRIDE)
LIMIT = 400 * 1024


@pytest.fixture
def audit(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> DynamoAuditLog:
    monkeypatch.setenv("OPX_BACKEND", "aws")
    settings = get_settings()
    client = dynamo_client(settings.region, max_attempts=1)
    create_tables(settings, client=client)
    log, _, _ = open_dynamo(settings, client=client)
    return log


def _dynamo_size(value: dict[str, Any]) -> int:
    """DynamoDB's documented item size: UTF-8 names and strings, numbers ~1 byte per 2 digits, +3/+1 for maps and lists."""

    def size(attr: dict[str, Any]) -> int:
        (kind, inner), = attr.items()
        if kind == "S":
            return len(inner.encode())
        if kind == "N":
            return len(inner.lstrip("-").replace(".", "")) // 2 + 2
        if kind in ("BOOL", "NULL"):
            return 1
        if kind == "M":
            return 3 + sum(len(k.encode()) + size(v) + 1 for k, v in inner.items())
        if kind == "L":
            return 3 + sum(size(v) + 1 for v in inner)
        raise AssertionError(kind)

    return sum(len(name.encode()) + size(attr) for name, attr in value.items())


def _stored(audit: DynamoAuditLog, audit_id: str) -> dict[str, Any]:
    key = {"PK": {"S": f"AUDIT#{audit_id}"}, "SK": {"S": "METADATA"}}
    return audit.client.get_item(TableName=audit.table, Key=key, ConsistentRead=True)["Item"]


def test_a_250_kb_reason_still_completes_with_a_visible_marker(audit: DynamoAuditLog) -> None:
    reason = "r" * 250_000
    record = audit.start("KILL_SWITCH_DISABLE", "MANUAL", ADMIN, parameters={"reason": reason})
    done = audit.complete(
        record.audit_id,
        AuditStatus.SUCCESS,
        results={"state": {"reason": reason, "active": True}, "previous_reason": "é" * 300_000},
    )
    assert done.status is AuditStatus.SUCCESS
    stored = audit.get(record.audit_id)
    assert stored is not None and stored.status is AuditStatus.SUCCESS and stored.version == 2
    assert stored.parameters["reason"] == "r" * 16_384 + "… [truncated: 16384 of 250000 characters stored]"
    assert stored.results["state"]["reason"].endswith("[truncated: 16384 of 250000 characters stored]")
    assert stored.results["state"]["active"] is True
    assert stored.results["previous_reason"].startswith("é" * 16_384 + "… [truncated:")
    assert _dynamo_size(_stored(audit, record.audit_id)) < LIMIT


def test_huge_error_messages_and_result_lists_are_clipped(audit: DynamoAuditLog) -> None:
    record = audit.start("CALIBRATION", "MANUAL", ADMIN, parameters={"service": "api"})
    ids = [f"outcome-{i:08d}" for i in range(60_000)]
    audit.complete(record.audit_id, AuditStatus.FAILED, results={"ids": ids}, error_message="boom " * 200_000)
    stored = audit.get(record.audit_id)
    assert stored is not None and stored.status is AuditStatus.FAILED
    assert stored.parameters == {"service": "api"}
    assert stored.error_message is not None and len(stored.error_message) <= 2000
    kept = stored.results["ids"]
    assert kept[:-1] == ids[: len(kept) - 1]
    assert kept[-1] == f"… [truncated: {len(kept) - 1} of 60000 items stored]"
    assert _dynamo_size(_stored(audit, record.audit_id)) < LIMIT


def test_a_record_too_big_in_any_shape_still_completes(audit: DynamoAuditLog) -> None:
    record = audit.start("PATTERN_EXTRACTION", "MANUAL", ADMIN, parameters={f"p{i}": i for i in range(20_000)})
    audit.complete(record.audit_id, AuditStatus.SUCCESS, results={f"k{i:06d}": {"n": i} for i in range(40_000)})
    stored = audit.get(record.audit_id)
    assert stored is not None and stored.status is AuditStatus.SUCCESS
    assert stored.results["truncated"].startswith("… [truncated:")
    assert _dynamo_size(_stored(audit, record.audit_id)) < LIMIT


def test_small_records_are_stored_unchanged(audit: DynamoAuditLog) -> None:
    parameters = {"service": "api", "start_date": "2026-01-01T00:00:00.000Z", "reason": "x" * 16_384}
    record = audit.start("CALIBRATION", "MANUAL", ADMIN, parameters=parameters)
    audit.complete(record.audit_id, AuditStatus.SUCCESS, results={"ids": ["a", "b"], "count": 2})
    stored = audit.get(record.audit_id)
    assert stored is not None
    assert stored.parameters == parameters
    assert stored.results == {"ids": ["a", "b"], "count": 2}
