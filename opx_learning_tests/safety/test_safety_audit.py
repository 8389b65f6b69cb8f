"""Audit trail: status transitions, append-only, queries, stale completion (both backends)."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta

import pytest

from opx_learning.safety.audit import new_record
from opx_learning.safety.models import (
    SYSTEM,
    AuditNotFound,
    AuditStatus,
    AuditTransitionError,
    InvalidRequest,
    OperationType,
)
from opx_learning_tests.safety.conftest import OPERATOR

T0 = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)


def _seed(audit, operation: str, start: datetime, status: str | None = None, trigger: str = "SCHEDULED"):
    principal = SYSTEM if trigger == "SCHEDULED" else OPERATOR
    record = audit.append(new_record(operation, trigger, principal, parameters={"service": "orders"}, start_time=start))
    if status:
        record = audit.complete(record.audit_id, status, end_time=start + timedelta(seconds=2))
    return record


def test_running_then_one_terminal_status(backend) -> None:
    audit = backend.audit
    record = audit.start("CALIBRATION", "MANUAL", OPERATOR, parameters={"start_date": "2026-01-01"})
    assert record.audit_id.startswith("CALIBRATION#") and len(record.audit_id) == len("CALIBRATION#") + 32
    stored = audit.get(record.audit_id)
    assert stored == record and stored.status is AuditStatus.RUNNING and stored.version == 1

    done = audit.complete(record.audit_id, "SUCCESS", results={"calibration_id": "c1", "drift": 0.125})
    assert done.status is AuditStatus.SUCCESS and done.version == 2
    assert done.duration_ms == round((done.end_time - done.start_time).total_seconds() * 1000)
    assert audit.get(record.audit_id) == done
    assert audit.get(record.audit_id).results == {"calibration_id": "c1", "drift": 0.125}

    for status in ("FAILED", "SKIPPED", "SUCCESS"):
        with pytest.raises(AuditTransitionError, match="terminal"):
            audit.complete(record.audit_id, status)
    with pytest.raises(AuditTransitionError):
        audit.attach_run(record.audit_id, "run-2")
    assert audit.get(record.audit_id) == done


def test_bad_completions_are_refused(backend) -> None:
    audit = backend.audit
    with pytest.raises(AuditNotFound):
        audit.complete("CALIBRATION#" + "0" * 32, "SUCCESS")
    record = audit.start("SNAPSHOT", "MANUAL", OPERATOR)
    with pytest.raises(AuditTransitionError, match="not a terminal status"):
        audit.complete(record.audit_id, "RUNNING")
    with pytest.raises(InvalidRequest, match="status: 'DONE'"):
        audit.complete(record.audit_id, "DONE")
    with pytest.raises(AuditTransitionError, match="already exists"):
        audit.append(record)


def test_concurrent_completions_only_one_wins(backend) -> None:
    record = backend.audit.start("PATTERN_EXTRACTION", "MANUAL", OPERATOR)
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def complete(status: str) -> None:
        barrier.wait()
        try:
            backend.audit.complete(record.audit_id, status)
            outcomes.append(status)
        except AuditTransitionError:
            outcomes.append("refused")

    threads = [threading.Thread(target=complete, args=(s,)) for s in ["SUCCESS", "FAILED"] * 4]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [o for o in outcomes if o != "refused"]
    assert len(winners) == 1 and outcomes.count("refused") == 7
    assert backend.audit.get(record.audit_id).status.value == winners[0]


def test_error_message_truncated_to_2000_chars(backend) -> None:
    record = backend.audit.start("SNAPSHOT", "MANUAL", OPERATOR)
    done = backend.audit.complete(record.audit_id, "FAILED", error_message="x" * 5000)
    stored = backend.audit.get(record.audit_id)
    assert len(done.error_message) == len(stored.error_message) == 2000
    assert stored.error_message.startswith("xxx")


def test_queries_by_id_type_range_recent_status(backend) -> None:
    audit = backend.audit
    seeded = [
        _seed(audit, "PATTERN_EXTRACTION", T0, "SUCCESS"),
        _seed(audit, "PATTERN_EXTRACTION", T0 + timedelta(days=1), "FAILED"),
        _seed(audit, "PATTERN_EXTRACTION", T0 + timedelta(days=2), "SUCCESS"),
        _seed(audit, "CALIBRATION", T0 + timedelta(hours=1), "SUCCESS"),
        _seed(audit, "SNAPSHOT", T0 + timedelta(hours=2), "SKIPPED"),
        _seed(audit, "SNAPSHOT", T0 + timedelta(hours=3)),
    ]
    ids = [r.audit_id for r in seeded]
    assert audit.get(ids[3]) == seeded[3]
    assert audit.get("SNAPSHOT#missing") is None

    in_range = audit.by_operation("PATTERN_EXTRACTION", T0, T0 + timedelta(days=2))
    assert [r.audit_id for r in in_range] == [ids[1], ids[0]]  # half-open: day 2 excluded, newest first
    assert [r.audit_id for r in audit.by_operation("pattern-extraction")] == [ids[2], ids[1], ids[0]]
    assert [r.audit_id for r in audit.recent(3)] == [ids[2], ids[1], ids[5]]
    assert [r.audit_id for r in audit.by_status("SUCCESS")] == [ids[2], ids[3], ids[0]]
    assert [r.audit_id for r in audit.by_status(AuditStatus.RUNNING)] == [ids[5]]
    found = audit.search(operation_type="SNAPSHOT", status="SKIPPED", since="2026-01-10", until="2026-01-11")
    assert [r.audit_id for r in found] == [ids[4]]

    with pytest.raises(InvalidRequest, match="operation: 'MERGE'"):
        audit.search(operation_type="MERGE")
    with pytest.raises(InvalidRequest, match="until"):
        audit.by_operation("CALIBRATION", "2026-01-02", "2026-01-01")
    with pytest.raises(InvalidRequest, match="since: 'yesterday'"):
        audit.search(since="yesterday")


def test_dynamo_queries_paginate(backend) -> None:
    if backend.name != "dynamo":
        pytest.skip("pagination is a DynamoDB concern")
    backend.audit.page_size = 2
    ids = [_seed(backend.audit, "CALIBRATION", T0 + timedelta(minutes=i), "SUCCESS").audit_id for i in range(7)]
    assert [r.audit_id for r in backend.audit.by_operation("CALIBRATION")] == ids[::-1]
    assert [r.audit_id for r in backend.audit.by_status("SUCCESS", limit=5)] == ids[::-1][:5]


def test_no_delete_and_no_update_after_terminal(backend) -> None:
    record = _seed(backend.audit, "CALIBRATION", T0, "SUCCESS")
    assert not any(hasattr(backend.audit, name) for name in ("delete", "remove", "update", "put"))
    if backend.name == "sqlite":
        # The rules live in the database itself: raw SQL cannot delete or rewrite a terminal record.
        conn = sqlite3.connect(backend.spec[1])
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM audit WHERE audit_id = ?", (record.audit_id,))
        with pytest.raises(sqlite3.IntegrityError, match="terminal"):
            conn.execute("UPDATE audit SET status = 'FAILED' WHERE audit_id = ?", (record.audit_id,))
        conn.close()
    assert backend.audit.get(record.audit_id) == record


def test_complete_stale_marks_gone_runs_failed(backend) -> None:
    now = T0 + timedelta(hours=1)
    gone = backend.audit.append(new_record("SNAPSHOT", "SCHEDULED", SYSTEM, run_id="run-gone", start_time=T0))
    alive = backend.audit.append(new_record("SNAPSHOT", "SCHEDULED", SYSTEM, run_id="run-alive", start_time=T0))
    young = backend.audit.append(
        new_record("SNAPSHOT", "SCHEDULED", SYSTEM, run_id="run-new", start_time=now - timedelta(seconds=30))
    )
    done = backend.audit.complete_stale(lambda r: r.run_id == "run-alive", now=now)
    assert [r.audit_id for r in done] == [gone.audit_id]
    stored = backend.audit.get(gone.audit_id)
    assert stored.status is AuditStatus.FAILED and stored.results["failure_reason"] == "RUN_TERMINATED"
    assert "RUN_TERMINATED" in stored.error_message and stored.end_time == now
    assert backend.audit.get(alive.audit_id).status is AuditStatus.RUNNING
    assert backend.audit.get(young.audit_id).status is AuditStatus.RUNNING
    assert [r.audit_id for r in backend.audit.complete_stale(lambda r: False, now=now)] == [alive.audit_id]


def test_attach_run_while_running(backend) -> None:
    record = backend.audit.start(OperationType.CALIBRATION, "MANUAL", OPERATOR)
    attached = backend.audit.attach_run(record.audit_id, "run-1")
    assert attached.run_id == "run-1" and backend.audit.get(record.audit_id).run_id == "run-1"
