"""Each stored snapshot partition's metadata shows its diff against the previous snapshot of its cadence."""

from __future__ import annotations

import dagster as dg
import polars as pl

from opx_learning.app import launch
from opx_learning.core.snapshot_diff import diff_snapshots
from opx_learning.stores.snapshots import snapshot_store
from opx_learning_tests import wiring
from opx_learning_tests.wiring import settings


def test_dagster_daily_snapshot_metadata_diffs_the_previous_day(
    instance: dg.DagsterInstance, seeded: pl.DataFrame
) -> None:
    days = ["2025-10-14", "2025-10-15"]
    assert launch.materialize(settings(), instance, ["pattern_summaries_daily"], days).success
    # One run per day, as the daily schedule launches them.
    runs = [launch.materialize(settings(), instance, ["learning_snapshots_daily"], [day]) for day in days]
    assert all(run.success for run in runs), [run.failures for run in runs]
    first, second = (run.metadata["learning_snapshots_daily"][day] for run, day in zip(runs, days, strict=True))
    assert first["diff_against"] == "-"
    assert second["diff_against"] == first["snapshot_id"]
    store = snapshot_store(wiring.settings())
    expected = diff_snapshots(store.get(first["snapshot_id"]), store.get(second["snapshot_id"]))
    assert second["diff_new_root_causes"] == len(expected["root_causes"]["new"])
    assert second["diff_services_changed"] == sum(1 for s in expected["service_metrics"] if s != "ALL")
    assert "| item | before | after | change |" in second["diff"]
    assert "Against the previous daily snapshot 2025-10-14T00:00:00.000Z" in second["diff"]
