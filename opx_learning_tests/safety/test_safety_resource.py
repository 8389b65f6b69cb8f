"""SafetyResource: how a run is audited (launch paths), the schedule gate, a guarded asset."""

import dagster as dg
import pytest

from opx_learning.backends import guard_for
from opx_learning.resources.safety import SafetyResource, adoption_tags
from opx_learning.safety.models import AuditStatus, TriggerType
from opx_learning_tests import wiring
from opx_learning_tests.safety.conftest import ADMIN
from opx_learning_tests.wiring import resource


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        ({"dagster/schedule_name": "daily"}, TriggerType.MANUAL),  # no tick in an instance created it
        ({"dagster/schedule_name": "daily", "dagster/tick": "7"}, TriggerType.MANUAL),
        ({"dagster/sensor_name": "s"}, TriggerType.MANUAL),
        ({"dagster/backfill": "abc"}, TriggerType.BACKFILL),
        ({"dagster/asset_partition_range_start": "2026-01-01"}, TriggerType.BACKFILL),
        ({}, TriggerType.MANUAL),
        ({"opx/trigger_type": "SCHEDULED", "opx/principal": "ops-admin"}, TriggerType.MANUAL),
    ],
)
def test_launch_path_from_tags_is_dagster_ui(tags, expected, opx_home) -> None:
    trigger, principal = resource("safety").launch_path("run-1", tags, None)
    assert trigger is expected
    assert (principal.principal, principal.authority.value) == ("dagster-ui", "HUMAN_OPERATOR")


@dg.asset(output_required=False)
def guarded_asset(context: dg.AssetExecutionContext, safety: SafetyResource):
    """A minimal asset following the guard protocol."""
    guard = safety.guard()
    attempt = safety.begin_for_run("PATTERN_EXTRACTION", run_id=context.run_id, tags=context.run.tags, guard=guard,
                                   instance=context.instance)
    if not attempt.allowed:
        yield dg.AssetObservation(asset_key=context.asset_key, metadata={"skip_reason": attempt.skip_reason.value})
        return
    guard.succeed(attempt, {"rows": 1})
    yield dg.Output(1)


def test_kill_switch_skips_run_gracefully_and_emergency_materializes(opx_home) -> None:
    resources = {"safety": resource("safety")}
    guard = guard_for(wiring.settings())
    guard.kill_switch.disable(ADMIN, "freeze")

    tagged = dg.materialize([guarded_asset], resources=resources, tags={"dagster/schedule_name": "daily"})
    assert tagged.success
    assert tagged.get_asset_materialization_events() == []
    skipped = guard.audit.by_status("SKIPPED")
    assert skipped[0].results["skip_reason"] == "KILL_SWITCH_ACTIVE" and skipped[0].run_id == tagged.run_id
    assert skipped[0].triggered_by.principal == "dagster-ui"

    attempt = guard.begin("PATTERN_EXTRACTION", "MANUAL", ADMIN, emergency=True, rate_limited=True, adoptable=True)
    emergency = dg.materialize([guarded_asset], resources=resources, tags=adoption_tags(attempt))
    assert emergency.success and len(emergency.get_asset_materialization_events()) == 1
    record = guard.audit.get(attempt.audit_id)
    assert record.status is AuditStatus.SUCCESS and record.run_id == emergency.run_id


def test_schedule_gate(opx_home) -> None:
    safety = resource("safety")
    assert safety.schedule_gate("CALIBRATION") is None
    guard_for(wiring.settings()).kill_switch.disable(ADMIN, "freeze")
    before = guard_for(wiring.settings()).audit.recent(50)
    skip = safety.schedule_gate("CALIBRATION", {"time_window": "MONTHLY"})
    assert isinstance(skip, dg.SkipReason) and "KILL_SWITCH_ACTIVE" in skip.skip_message
    assert "dry run" in skip.skip_message
    # Without a daemon tick (no context) nothing is audited.
    assert guard_for(wiring.settings()).audit.recent(50) == before
