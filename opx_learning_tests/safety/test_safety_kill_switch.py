"""Kill switch: authority, audit of every attempt, planned re-enable (both backends)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from opx_learning.safety.models import (
    AuditStatus,
    InsufficientAuthority,
    InvalidRequest,
)
from opx_learning_tests.safety.conftest import ADMIN, OPERATOR, SRE


def test_initialised_state_is_enabled(backend) -> None:
    state = backend.guard().kill_switch.status()
    assert state.enabled and not state.active and state.version == 1
    rest = state.to_rest()
    assert rest.pop("lastModified").endswith("Z")
    assert rest == {"active": False, "enabled": True, "disabledAt": None, "disabledBy": None, "reason": None}


@pytest.mark.parametrize("principal", [OPERATOR, SRE])
def test_unauthorized_changes_refused_and_audited(backend, principal) -> None:
    switch = backend.guard().kill_switch
    with pytest.raises(InsufficientAuthority, match="INSUFFICIENT_AUTHORITY.*requires EMERGENCY_OVERRIDE") as refused:
        switch.disable(principal, "investigating")
    record = backend.audit.get(refused.value.audit_id)
    assert record.operation_type == "KILL_SWITCH_DISABLE" and record.status is AuditStatus.SKIPPED
    assert record.results["skip_reason"] == "INSUFFICIENT_AUTHORITY"
    assert record.triggered_by == principal and record.parameters["reason"] == "investigating"
    assert switch.status().enabled

    with pytest.raises(InsufficientAuthority) as refused_enable:
        switch.enable(principal)
    assert backend.audit.get(refused_enable.value.audit_id).operation_type == "KILL_SWITCH_ENABLE"


def test_disable_and_enable_by_emergency_override(backend) -> None:
    switch = backend.guard().kill_switch
    change = switch.disable(ADMIN, "Production incident")
    assert change.to_rest() == {
        "status": "DISABLED",
        "message": "Kill switch disabled - all automated operations blocked",
        "auditId": change.audit_id,
    }
    rest = switch.status().to_rest()
    assert rest["active"] is True and rest["enabled"] is False and rest["reason"] == "Production incident"
    assert rest["disabledBy"] == {"type": "EMERGENCY_OVERRIDE", "identifier": "ops-admin"}
    assert rest["disabledAt"] == rest["lastModified"] and rest["disabledAt"].endswith("Z")
    record = backend.audit.get(change.audit_id)
    assert (record.operation_type, record.status) == ("KILL_SWITCH_DISABLE", AuditStatus.SUCCESS)
    assert record.results["state"]["active"] is True

    enabled = switch.enable(ADMIN)
    assert enabled.status == "ENABLED" and switch.status().enabled
    assert backend.audit.get(enabled.audit_id).status is AuditStatus.SUCCESS
    assert [a[1] for a in backend.alerts] == ["KILL_SWITCH_DISABLED", "KILL_SWITCH_ENABLED"]


@pytest.mark.parametrize("reason", [None, "", "   "])
def test_reason_required(backend, reason) -> None:
    with pytest.raises(InvalidRequest, match="reason: a reason is required"):
        backend.guard().kill_switch.disable(ADMIN, reason)
    assert backend.audit.recent(5) == []


def test_until_must_be_future_and_readable(backend) -> None:
    switch = backend.guard().kill_switch
    with pytest.raises(InvalidRequest, match="until: .* must be in the future"):
        switch.disable(ADMIN, "window", until="2020-01-01")
    with pytest.raises(InvalidRequest, match="until: 'soon'"):
        switch.disable(ADMIN, "window", until="soon")


def test_planned_window_re_enables_once_as_system(backend) -> None:
    start = datetime(2026, 4, 5, 2, 0, tzinfo=UTC)
    backend.clock.fixed = start
    guard = backend.guard()
    guard.kill_switch.disable(ADMIN, "quarterly maintenance", until=start + timedelta(hours=2))
    backend.clock.fixed = start + timedelta(hours=1, minutes=59)
    assert guard.kill_switch.status().active and guard.kill_switch.status().to_rest()["until"] == "2026-04-05T04:00:00.000Z"

    backend.clock.fixed = start + timedelta(hours=2)
    states = []
    threads = [threading.Thread(target=lambda: states.append(guard.kill_switch.status())) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(state.enabled for state in states)
    enables = guard.audit.by_operation("KILL_SWITCH_ENABLE")
    assert len(enables) == 1
    assert enables[0].triggered_by.authority == "SYSTEM" and enables[0].trigger_type == "SCHEDULED"
    assert enables[0].status is AuditStatus.SUCCESS and enables[0].parameters["reason"] == "planned window ended"


def test_re_disabling_keeps_when_the_switch_became_active(backend) -> None:
    switch = backend.guard().kill_switch
    first = switch.disable(ADMIN, "Production incident")
    original = switch.status().disabled_at
    second = switch.disable(ADMIN, "Extended: data quality review")
    state = switch.status()
    assert state.active and state.disabled_at == original
    assert state.reason == "Extended: data quality review" and state.last_modified >= original
    assert backend.audit.get(first.audit_id).status is AuditStatus.SUCCESS
    assert backend.audit.get(second.audit_id).status is AuditStatus.SUCCESS
