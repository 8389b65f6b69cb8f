"""Guard: kill switch, emergency bypass, fail closed, maintenance, rate limits, inputs (both backends)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from opx_learning.safety.guard import AdoptionRefused, Refused
from opx_learning.safety.maintenance import MaintenanceCalendar
from opx_learning.safety.models import SYSTEM, AuditStatus, InvalidRequest, Principal
from opx_learning_tests.safety.conftest import ADMIN, OPERATOR, SRE

PARAMS = {"start_date": "2026-01-01", "end_date": "2026-01-31T23:59:59.999Z"}


def _status(backend, attempt):
    return backend.audit.get(attempt.audit_id).status


def test_allowed_operation_runs_and_completes(backend) -> None:
    guard = backend.guard()
    attempt = guard.begin("PATTERN_EXTRACTION", "SCHEDULED", SYSTEM, {**PARAMS, "service": "orders"}, run_id="r1")
    assert attempt.allowed and attempt.skip_reason is None
    record = backend.audit.get(attempt.audit_id)
    assert record.status is AuditStatus.RUNNING and record.run_id == "r1"
    assert record.parameters == {
        "start_date": "2026-01-01T00:00:00.000Z", "end_date": "2026-02-01T00:00:00.000Z", "service": "orders",
    }
    assert record.triggered_by.to_dict() == {"type": "SYSTEM", "principal": "system"}
    done = guard.succeed(attempt, {"summary_ids": ["a", "b"], "outcome_count": 12})
    assert done.status is AuditStatus.SUCCESS and backend.audit.get(attempt.audit_id).results["outcome_count"] == 12


def test_kill_switch_blocks_scheduled_and_manual(backend) -> None:
    guard = backend.guard()
    guard.kill_switch.disable(ADMIN, "data quality")
    scheduled = guard.begin("SNAPSHOT", "SCHEDULED", SYSTEM, {"snapshot_type": "daily"})
    manual = guard.begin("CALIBRATION", "MANUAL", SRE, PARAMS, rate_limited=True)
    backfill = guard.begin("PATTERN_EXTRACTION", "BACKFILL", ADMIN, PARAMS, emergency=True)
    for attempt in (scheduled, manual, backfill):
        assert not attempt.allowed and attempt.skip_reason == "KILL_SWITCH_ACTIVE"
        record = backend.audit.get(attempt.audit_id)
        assert record.status is AuditStatus.SKIPPED and record.results["skip_reason"] == "KILL_SWITCH_ACTIVE"
        assert "data quality" in record.results["message"]
    assert backend.audit.get(scheduled.audit_id).parameters["snapshot_type"] == "DAILY"
    # a refused trigger does not use up the rate limit
    assert guard.rate_limiter.peek(SRE, "CALIBRATION").remaining == 3


def test_emergency_manual_run_passes_only_for_emergency_override(backend) -> None:
    guard = backend.guard()
    guard.kill_switch.disable(ADMIN, "incident")
    denied = guard.begin("CALIBRATION", "MANUAL", SRE, PARAMS, emergency=True, rate_limited=True)
    assert not denied.allowed and denied.skip_reason == "KILL_SWITCH_ACTIVE"
    assert backend.audit.get(denied.audit_id).parameters["emergency"] is True

    granted = guard.begin("CALIBRATION", "MANUAL", ADMIN, PARAMS, emergency=True, rate_limited=True)
    assert granted.allowed and granted.emergency
    assert backend.audit.get(granted.audit_id).results == {"emergency_bypass": True}
    assert granted.rate_limit.remaining == 2  # emergency triggers count too
    guard.succeed(granted, {"calibration_id": "cal-1"})
    assert backend.audit.get(granted.audit_id).results == {"emergency_bypass": True, "calibration_id": "cal-1"}


def test_unreadable_state_fails_closed_with_p1_alert(backend) -> None:
    guard = backend.guard()
    backend.corrupt_kill_switch()
    attempt = guard.begin("PATTERN_EXTRACTION", "SCHEDULED", SYSTEM, {"time_window": "DAILY"})
    assert not attempt.allowed and attempt.skip_reason == "KILL_SWITCH_UNAVAILABLE"
    record = backend.audit.get(attempt.audit_id)
    assert record.status is AuditStatus.SKIPPED and record.results["skip_reason"] == "KILL_SWITCH_UNAVAILABLE"
    assert [(s, a) for s, a, _ in backend.alerts] == [("P1", "KILL_SWITCH_UNAVAILABLE")]
    assert not guard.begin("SNAPSHOT", "MANUAL", SRE, emergency=True).allowed
    assert guard.begin("SNAPSHOT", "MANUAL", ADMIN, emergency=True).allowed
    # an authorized change repairs the state
    guard.kill_switch.enable(ADMIN)
    assert guard.begin("SNAPSHOT", "MANUAL", SRE).allowed


def test_maintenance_window_skips_scheduled_only(backend) -> None:
    backend.clock.fixed = datetime(2026, 4, 5, 2, 30, tzinfo=UTC)  # first Sunday of Q2
    guard = backend.guard(calendar=MaintenanceCalendar())
    scheduled = guard.begin("SNAPSHOT", "SCHEDULED", SYSTEM, {"snapshot_type": "DAILY"})
    assert not scheduled.allowed and scheduled.skip_reason == "MAINTENANCE_WINDOW"
    record = backend.audit.get(scheduled.audit_id)
    assert record.status is AuditStatus.SKIPPED
    assert record.results["maintenance_window"] == {"start": "2026-04-05T02:00:00.000Z", "end": "2026-04-05T04:00:00.000Z"}
    assert guard.begin("SNAPSHOT", "MANUAL", OPERATOR).allowed
    backend.clock.fixed = datetime(2026, 4, 5, 4, 0, tzinfo=UTC)
    assert guard.begin("SNAPSHOT", "SCHEDULED", SYSTEM).allowed


def test_gate_audits_only_refusals(backend) -> None:
    guard = backend.guard()
    assert guard.gate("PATTERN_EXTRACTION", {"time_window": "WEEKLY"}) is None
    assert backend.audit.recent(5) == []
    guard.kill_switch.disable(ADMIN, "freeze")
    refusal = guard.gate("PATTERN_EXTRACTION", {"time_window": "WEEKLY"})
    assert refusal is not None and refusal.skip_reason == "KILL_SWITCH_ACTIVE"
    record = backend.audit.get(refusal.audit_id)
    assert (record.status, record.trigger_type, record.triggered_by) == (AuditStatus.SKIPPED, "SCHEDULED", SYSTEM)


def test_adopt_rechecks_kill_switch(backend) -> None:
    guard = backend.guard()
    plain = guard.begin("SNAPSHOT", "MANUAL", SRE, {"snapshot_type": "CUSTOM", **PARAMS}, adoptable=True)
    emergency = guard.begin("SNAPSHOT", "MANUAL", ADMIN, {"snapshot_type": "CUSTOM", **PARAMS}, emergency=True,
                            adoptable=True)
    guard.kill_switch.disable(ADMIN, "stop")
    adopted = guard.adopt(plain.audit_id, run_id="run-a", token=plain.adoption_token, operation_type="SNAPSHOT")
    assert not adopted.allowed and _status(backend, plain) is AuditStatus.SKIPPED
    assert backend.audit.get(plain.audit_id).run_id == "run-a"
    resumed = guard.adopt(emergency.audit_id, run_id="run-b", token=emergency.adoption_token)
    assert resumed.allowed and resumed.run_id == "run-b" and resumed.emergency
    with pytest.raises(AdoptionRefused, match="adopted already by run run-b"):
        guard.adopt(emergency.audit_id, run_id="run-c", token=emergency.adoption_token)


def test_adopt_needs_the_launching_process_token(backend) -> None:
    guard = backend.guard()
    emergency = guard.begin("SNAPSHOT", "MANUAL", ADMIN, {"snapshot_type": "CUSTOM", **PARAMS}, emergency=True,
                            adoptable=True)
    not_adoptable = guard.begin("SNAPSHOT", "MANUAL", ADMIN, {"snapshot_type": "CUSTOM", **PARAMS})
    assert not_adoptable.adoption_token is None
    for audit_id, token in [
        (emergency.audit_id, None),
        (emergency.audit_id, (emergency.adoption_token or "") + "x"),
        (not_adoptable.audit_id, emergency.adoption_token),
    ]:
        with pytest.raises(AdoptionRefused, match="token"):
            guard.adopt(audit_id, run_id="run-x", token=token)
    record = backend.audit.get(emergency.audit_id)
    assert (record.status, record.run_id, record.version) == (AuditStatus.RUNNING, None, 1)
    assert emergency.adoption_token not in repr(emergency) and "adoption" not in json.dumps(emergency.to_dict())


def test_operation_context_manager(backend) -> None:
    guard = backend.guard()
    with guard.operation("PATTERN_EXTRACTION", "MANUAL", SRE, PARAMS) as attempt:
        attempt.results["summary_count"] = 4
    assert backend.audit.get(attempt.audit_id).results == {"summary_count": 4}
    assert _status(backend, attempt) is AuditStatus.SUCCESS

    with pytest.raises(ZeroDivisionError), guard.operation("CALIBRATION", "MANUAL", SRE, PARAMS) as failing:
        raise ZeroDivisionError("boom " + "y" * 3000)
    record = backend.audit.get(failing.audit_id)
    assert record.status is AuditStatus.FAILED and record.error_message.startswith("ZeroDivisionError: boom")
    assert len(record.error_message) == 2000

    guard.kill_switch.disable(ADMIN, "stop")
    with pytest.raises(Refused) as refused, guard.operation("SNAPSHOT", "SCHEDULED", SYSTEM):
        pytest.fail("body must not run")
    assert _status(backend, refused.value.attempt) is AuditStatus.SKIPPED


def test_rate_limit_sliding_window(backend) -> None:
    limiter = backend.rate_limiter
    t0 = 1_800_000_000.0
    decisions = [limiter.acquire(OPERATOR, "CALIBRATION", now=t0 + 100 * i) for i in range(3)]
    assert [d.allowed for d in decisions] == [True] * 3 and [d.remaining for d in decisions] == [2, 1, 0]
    refused = limiter.acquire(OPERATOR, "CALIBRATION", now=t0 + 1000)
    assert (refused.allowed, refused.error, refused.limit, refused.remaining) == (False, "RATE_LIMIT_EXCEEDED", 3, 0)
    assert refused.retry_after == 2600  # the oldest request (t0) leaves the window at t0 + 3600
    assert refused.headers() == {"X-RateLimit-Limit": "3", "X-RateLimit-Remaining": "0", "Retry-After": "2600"}
    assert limiter.acquire(OPERATOR, "CALIBRATION", now=t0 + 3599).retry_after == 1
    assert limiter.acquire(OPERATOR, "CALIBRATION", now=t0 + 3600.5).allowed  # t0 left the window
    assert not limiter.acquire(OPERATOR, "CALIBRATION", now=t0 + 3601).allowed
    assert limiter.acquire(SRE, "CALIBRATION", now=t0 + 1000).allowed  # per principal
    assert limiter.acquire(OPERATOR, "SNAPSHOT", now=t0 + 1000).remaining == 9  # per operation


def test_rate_limited_trigger_is_refused_and_audited(backend) -> None:
    guard = backend.guard()
    accepted = [guard.begin("PATTERN_EXTRACTION", "MANUAL", OPERATOR, PARAMS, rate_limited=True) for _ in range(5)]
    assert all(a.allowed for a in accepted)
    refused = guard.begin("PATTERN_EXTRACTION", "MANUAL", OPERATOR, PARAMS, rate_limited=True)
    assert not refused.allowed and refused.skip_reason == "RATE_LIMIT_EXCEEDED"
    assert 3590 <= refused.retry_after <= 3600 and refused.rate_limit.limit == 5
    results = backend.audit.get(refused.audit_id).results
    assert results["skip_reason"] == "RATE_LIMIT_EXCEEDED" and results["rate_limit"]["remaining"] == 0
    assert "retry after" in refused.message


@pytest.mark.parametrize(
    ("operation", "trigger", "principal", "params", "match"),
    [
        ("MERGE", "MANUAL", OPERATOR, {}, "operation_type: 'MERGE' is not one of"),
        ("KILL_SWITCH_DISABLE", "MANUAL", OPERATOR, {}, "not a learning operation"),
        ("SNAPSHOT", "HOURLY", OPERATOR, {}, "trigger_type: 'HOURLY'"),
        ("SNAPSHOT", "MANUAL", OPERATOR, {"start_date": "2026-02-01", "end_date": "2026-01-01"}, "end_date: .* must be after"),
        ("SNAPSHOT", "MANUAL", OPERATOR, {"start_date": "2026-13-01", "end_date": "2026-01-01"}, "start_date: '2026-13-01'"),
        ("SNAPSHOT", "MANUAL", OPERATOR, {"snapshot_type": "YEARLY"}, "snapshot_type: 'YEARLY' is not one of"),
        ("SNAPSHOT", "MANUAL", SYSTEM, {}, "SYSTEM authority is reserved"),
        ("SNAPSHOT", "MANUAL", "ops-admin", {}, "is not a resolved Principal"),
    ],
)
def test_bad_inputs_are_refused_with_clear_errors(backend, operation, trigger, principal, params, match) -> None:
    with pytest.raises(InvalidRequest, match=match):
        backend.guard().begin(operation, trigger, principal, params)
    assert backend.audit.recent(5) == []


def test_principal_validation() -> None:
    with pytest.raises(InvalidRequest, match="authority: 'ROOT'"):
        Principal("x", "ROOT")
    with pytest.raises(InvalidRequest, match="principal: ''"):
        Principal("", "HUMAN_OPERATOR")
