"""SafetyResource: trigger type and principal from run tags, schedule gate, a guarded asset."""

import dagster as dg
import pytest

from opx_learning.resources.safety import SafetyResource
from opx_learning.safety.guard import Guard
from opx_learning.safety.models import SYSTEM, AuditStatus, TriggerType
from opx_learning_tests.safety.conftest import ADMIN


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        ({"dagster/schedule_name": "daily"}, TriggerType.SCHEDULED),
        ({"dagster/sensor_name": "s"}, TriggerType.SCHEDULED),
        ({"dagster/backfill": "abc"}, TriggerType.BACKFILL),
        ({"dagster/asset_partition_range_start": "2026-01-01"}, TriggerType.BACKFILL),
        ({}, TriggerType.MANUAL),
        ({"opx/trigger_type": "manual", "dagster/backfill": "abc"}, TriggerType.MANUAL),
    ],
)
def test_trigger_type_from_tags(tags, expected) -> None:
    assert SafetyResource.trigger_type_from_tags(tags) is expected


def test_principal_for(opx_home, monkeypatch) -> None:
    assert SafetyResource.principal_for(TriggerType.SCHEDULED, {}) == SYSTEM
    assert SafetyResource.principal_for(TriggerType.MANUAL, {"opx/principal": "alice"}).principal == "alice"
    assert SafetyResource.principal_for(TriggerType.MANUAL, {"opx/principal": "alice"}).authority == "HUMAN_OPERATOR"


@dg.asset(output_required=False)
def guarded_asset(context: dg.AssetExecutionContext, safety: SafetyResource):
    """A minimal asset following the guard protocol."""
    guard = safety.guard()
    attempt = safety.begin_for_run("PATTERN_EXTRACTION", run_id=context.run_id, tags=context.run.tags, guard=guard)
    if not attempt.allowed:
        yield dg.AssetObservation(asset_key=context.asset_key, metadata={"skip_reason": attempt.skip_reason.value})
        return
    guard.succeed(attempt, {"rows": 1})
    yield dg.Output(1)


def test_kill_switch_skips_run_gracefully_and_emergency_materializes(opx_home) -> None:
    resources = {"safety": SafetyResource()}
    guard = Guard.from_settings()
    guard.kill_switch.disable(ADMIN, "freeze")

    scheduled = dg.materialize([guarded_asset], resources=resources, tags={"dagster/schedule_name": "daily"})
    assert scheduled.success
    assert scheduled.get_asset_materialization_events() == []
    skipped = guard.audit.by_status("SKIPPED")
    assert skipped[0].results["skip_reason"] == "KILL_SWITCH_ACTIVE" and skipped[0].run_id == scheduled.run_id

    attempt = guard.begin("PATTERN_EXTRACTION", "MANUAL", ADMIN, emergency=True, rate_limited=True)
    emergency = dg.materialize([guarded_asset], resources=resources,
                               tags={"opx/audit_id": attempt.audit_id, "opx/trigger_type": "MANUAL"})
    assert emergency.success and len(emergency.get_asset_materialization_events()) == 1
    record = guard.audit.get(attempt.audit_id)
    assert record.status is AuditStatus.SUCCESS and record.run_id == emergency.run_id


def test_schedule_gate(opx_home) -> None:
    safety = SafetyResource()
    assert safety.schedule_gate("CALIBRATION") is None
    Guard.from_settings().kill_switch.disable(ADMIN, "freeze")
    skip = safety.schedule_gate("CALIBRATION", {"time_window": "MONTHLY"})
    assert isinstance(skip, dg.SkipReason) and "KILL_SWITCH_ACTIVE" in skip.skip_message
    assert Guard.from_settings().audit.by_status("SKIPPED")[0].trigger_type is TriggerType.SCHEDULED
