"""A skipped run leaves each check's latest real result in view, with the skip and its reason beside it."""

from __future__ import annotations

import dagster as dg
import polars as pl

from opx_learning.backends import guard_for
from opx_learning.safety.models import AuthorityType, Principal
from opx_learning_tests import wiring
from opx_learning_tests.wiring import location

ADMIN = Principal("ops-admin", AuthorityType.EMERGENCY_OVERRIDE)
ASSET = dg.AssetKey("pattern_summaries_daily")
DAY = "2025-10-14"


def _run(instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    """A UI-like run of the daily patterns asset with every check on it (its own and the checklist's)."""
    repository = location().get_repository_def()
    assets = list({id(a): a for a in repository.assets_defs_by_key.values()}.values())
    checks = [c for key, c in repository.asset_checks_defs_by_key.items() if key.asset_key == ASSET]
    return dg.materialize(
        [*assets, *{id(c): c for c in checks}.values()],
        selection=dg.AssetSelection.assets(ASSET),
        instance=instance,
        partition_key=DAY,
        raise_on_error=False,
    )


def _latest(instance: dg.DagsterInstance, name: str) -> dg.AssetCheckEvaluation:
    record = instance.get_latest_asset_check_evaluation_record(dg.AssetCheckKey(ASSET, name))
    assert record is not None and record.event is not None, name
    return record, record.event.dagster_event.event_specific_data


def test_kill_switch_skip_restates_the_last_results_with_its_reason(
    instance: dg.DagsterInstance, seeded: pl.DataFrame
) -> None:
    first = _run(instance)
    assert first.success
    names = {"window_has_outcomes", "scheduled_daily_pattern_extraction"}
    before = {name: _latest(instance, name)[1] for name in names}
    outcomes = seeded.filter(pl.col("recorded_at").dt.date().cast(pl.String) == DAY).height
    assert before["window_has_outcomes"].description == f"{outcomes} outcomes in the daily window {DAY}"

    guard_for(wiring.settings()).kill_switch.disable(ADMIN, "bad outcomes feed")
    skipped = _run(instance)
    assert skipped.success and skipped.get_asset_materialization_events() == []
    assert skipped.dagster_run.tags["opx/skipped"] == "KILL_SWITCH_ACTIVE"

    for name in names:
        record, after = _latest(instance, name)
        # The skipped run did not hide the result: it carries the same verdict, for the same partition.
        assert record.run_id == skipped.run_id and record.status.value != "SKIPPED", name
        assert (after.passed, after.severity, after.partition) == (before[name].passed, before[name].severity, DAY)
        assert after.description.startswith(before[name].description), name
        assert after.metadata["restated_from_run"].value == first.run_id
        assert after.metadata["skipped"].value == "KILL_SWITCH_ACTIVE"
        assert skipped.run_id in after.metadata["skip_note"].value

    # A second skip still names the run that evaluated, not the skip before it.
    again = _run(instance)
    for name in names:
        record, after = _latest(instance, name)
        assert record.run_id == again.run_id and after.metadata["restated_from_run"].value == first.run_id


def test_a_check_never_evaluated_stays_skipped(instance: dg.DagsterInstance, seeded: pl.DataFrame) -> None:
    guard_for(wiring.settings()).kill_switch.disable(ADMIN, "bad outcomes feed")
    result = _run(instance)
    assert result.success
    record = instance.get_latest_asset_check_evaluation_record(dg.AssetCheckKey(ASSET, "window_has_outcomes"))
    # Planned by a run that ended without evaluating it: the UI resolves that to "Skipped"; nothing was made up.
    assert record is not None and record.status.value == "PLANNED" and record.run_id == result.run_id
    assert instance.get_run_by_id(result.run_id).status == dg.DagsterRunStatus.SUCCESS
