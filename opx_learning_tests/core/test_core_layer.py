"""core/ is the bottom layer: no Dagster, nothing from above it; the checklist's names are the audit trail's and the alerts'."""

from __future__ import annotations

import ast
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from opx_learning.alerts import models as alert_models
from opx_learning.core import checklist as cl
from opx_learning.core.windows import Window, day_window
from opx_learning.safety.models import (
    LEARNING_OPERATIONS,
    AuditStatus,
    OperationType,
    TriggerType,
)

CORE = Path(__file__).resolve().parents[2] / "opx_learning" / "core"


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_core_imports_neither_dagster_nor_any_layer_above_it() -> None:
    wrong = {
        f"{path.name}: {name}"
        for path in sorted(CORE.glob("*.py"))
        for name in _imports(path)
        if name.split(".")[0] == "dagster"
        or (name.startswith("opx_learning") and not name.startswith("opx_learning.core"))
    }
    assert not wrong, sorted(wrong)


def test_checklist_names_are_the_audit_trails_and_the_alerts() -> None:
    assert cl.AUDIT_STATUSES == tuple(status.value for status in AuditStatus)
    assert cl.LEARNING_OPERATIONS == tuple(operation.value for operation in LEARNING_OPERATIONS)
    assert {cl.PATTERN_EXTRACTION, cl.CALIBRATION, cl.SNAPSHOT} <= {operation.value for operation in OperationType}
    assert cl.SCHEDULED == TriggerType.SCHEDULED.value
    assert cl.SEVERITIES == alert_models.SEVERITIES
    assert cl.DIGEST_ALARM == alert_models.MORNING_CHECKLIST
    assert cl.FAILURE_ALARMS == {
        alert_models.CALIBRATION_FAILURE,
        alert_models.CONSECUTIVE_FAILURES,
        alert_models.REPEATED_FAILURE,
        alert_models.OPERATION_FAILURE,
        alert_models.TIMEOUT,
    }


class _Readings:
    """A reader with a day's audit records and nothing stored."""

    def __init__(self, at: datetime, records: list[Any]) -> None:
        self.at = at
        self._records = records

    def records(self, since: datetime, until: datetime | None = None) -> list[Any]:
        return [r for r in self._records if since <= r.start_time < (until or self.at)]

    def period_key(self, cadence: str) -> str:
        return "2025-10-01"

    def window(self, cadence: str, key: str) -> Window:
        return day_window(datetime.fromisoformat(key).date())


def _record(operation: OperationType, status: AuditStatus, audit_id: str) -> SimpleNamespace:
    return SimpleNamespace(
        operation_type=operation, status=status, audit_id=audit_id, start_time=datetime(2025, 10, 1, 12, tzinfo=UTC)
    )


def test_checklist_rules_judge_audit_records_without_dagster() -> None:
    at = datetime(2025, 10, 2, 9, tzinfo=UTC)
    records = [
        _record(OperationType.PATTERN_EXTRACTION, AuditStatus.SUCCESS, "a1"),
        _record(OperationType.SNAPSHOT, AuditStatus.FAILED, "a2"),
    ]
    result = cl.evaluate_item(cl.ITEMS_BY_NAME["operations_succeeded_last_24h"], _Readings(at, records))
    assert (result.status, result.severity, result.partition) == (cl.FAIL, "P1", "2025-10-01")
    assert result.figure == "0 RUNNING, 1 SUCCESS, 1 FAILED, 0 SKIPPED; FAILED: SNAPSHOT a2"
    assert result.period == "24 h before 2025-10-02T09:00:00.000Z (2025-10-01)"
    rate = cl.evaluate_item(cl.ITEMS_BY_NAME["error_rate_under_10_percent_last_24h"], _Readings(at, records))
    assert rate.status == cl.FAIL and "SNAPSHOT 1/1 failed (100.0%)" in rate.figure
    digest = cl.digest([result, rate], at)
    assert (digest.alarm, digest.severity, digest.key) == ("MORNING_CHECKLIST", "P1", "checklist:2025-10-02T09:00:00.000Z")
    assert digest.details["summary"] == "2 FAIL, 0 WARN, 0 PASS"
