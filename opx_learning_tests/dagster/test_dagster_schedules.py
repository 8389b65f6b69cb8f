"""Schedules target the right (previous) partition at chosen tick times and skip under the kill switch."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg
import pytest

from opx_learning.safety.models import AuthorityType, Principal
from opx_learning_tests.dagster.conftest import daemon_tick
from opx_learning_tests.wiring import location, resource, schedule


def _tick(schedule: dg.ScheduleDefinition, at: datetime, instance: dg.DagsterInstance) -> dg.ScheduleExecutionData:
    with dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=at,
        resources={"safety": resource("safety")},
        repository_def=location().get_repository_def(),
    ) as context:
        return schedule.evaluate_tick(context)


def _keys(data: dg.ScheduleExecutionData) -> list[str]:
    return [request.partition_key for request in data.run_requests or []]


@pytest.mark.parametrize(
    ("schedule", "tick", "expected"),
    [
        # Year boundary: the 2026-01-01 ticks target the last day / month of 2025.
        (schedule("daily_patterns_schedule"), datetime(2026, 1, 1, 0, 0, tzinfo=UTC), "2025-12-31"),
        (schedule("monthly_calibration_schedule"), datetime(2026, 1, 1, 0, 0, tzinfo=UTC), "2025-12-01"),
        (schedule("daily_snapshot_schedule"), datetime(2026, 1, 1, 1, 0, tzinfo=UTC), "2025-12-31"),
        (schedule("monthly_snapshot_schedule"), datetime(2026, 1, 1, 1, 0, tzinfo=UTC), "2025-12-01"),
        # Month boundary (leap-free February) and Sundays.
        (schedule("daily_patterns_schedule"), datetime(2026, 3, 1, 0, 0, tzinfo=UTC), "2026-02-28"),
        (schedule("monthly_calibration_schedule"), datetime(2026, 3, 1, 0, 0, tzinfo=UTC), "2026-02-01"),
        (schedule("weekly_patterns_schedule"), datetime(2026, 1, 4, 0, 0, tzinfo=UTC), "2025-12-28"),
        (schedule("weekly_snapshot_schedule"), datetime(2026, 1, 4, 1, 0, tzinfo=UTC), "2025-12-28"),
        (schedule("weekly_patterns_schedule"), datetime(2025, 3, 2, 0, 0, tzinfo=UTC), "2025-02-23"),
    ],
)
def test_dagster_schedule_targets_previous_partition(
    schedule: dg.ScheduleDefinition, tick: datetime, expected: str, instance: dg.DagsterInstance
) -> None:
    data = _tick(schedule, tick, instance)
    assert _keys(data) == [expected]
    assert data.run_requests[0].run_key == f"{schedule.name}:{expected}"


def test_dagster_schedule_skips_before_the_first_week(instance: dg.DagsterInstance) -> None:
    data = _tick(schedule("weekly_patterns_schedule"), datetime(2025, 1, 5, 0, 0, tzinfo=UTC), instance)
    assert not data.run_requests
    assert "no complete partition" in data.skip_message


def test_dagster_schedule_skips_with_audit_while_kill_switch_active(instance: dg.DagsterInstance) -> None:
    guard = resource("safety").guard()
    guard.kill_switch.disable(Principal("ops-admin", AuthorityType.EMERGENCY_OVERRIDE), "investigating data quality")
    # Evaluated without a daemon tick (a dry run): skipped, nothing audited.
    data = _tick(schedule("daily_patterns_schedule"), datetime(2026, 1, 1, 0, 0, tzinfo=UTC), instance)
    assert not data.run_requests
    assert "KILL_SWITCH_ACTIVE" in data.skip_message
    assert [r for r in guard.audit.recent(10) if r.operation_type.value == "PATTERN_EXTRACTION"] == []
    # The daemon's tick (stored before the evaluation, its id in the log key) is audited.
    at = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
    tick = daemon_tick(instance, schedule("daily_patterns_schedule").name, at.timestamp())
    repository = location().get_repository_def()
    with dg.ScheduleEvaluationContext(
        instance.get_ref(), at, [repository.name, schedule("daily_patterns_schedule").name, str(tick)], repository.name,
        schedule("daily_patterns_schedule").name, resources={"safety": resource("safety")}, repository_def=repository,
    ) as context:
        assert not schedule("daily_patterns_schedule").evaluate_tick(context).run_requests
    skipped = [r for r in guard.audit.recent(10) if r.operation_type.value == "PATTERN_EXTRACTION"]
    assert [(r.status.value, r.trigger_type.value, r.skip_reason) for r in skipped] == [
        ("SKIPPED", "SCHEDULED", "KILL_SWITCH_ACTIVE")
    ]
    assert skipped[0].parameters["start_date"] == "2025-12-31T00:00:00.000Z"
