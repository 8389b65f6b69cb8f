"""drift_metrics declares the previous month's calibration, so Dagster orders parallel month runs by it."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from opx_learning.app import launch
from opx_learning_tests.wiring import partitions, resource, settings

CALIBRATION = dg.AssetKey("confidence_calibration")
DRIFT = dg.AssetKey("drift_metrics")


def test_asset_graph_makes_each_month_depend_on_the_month_before() -> None:
    graph = launch.definitions(settings()).resolve_asset_graph()
    upstream = graph.get_parent_partition_keys_for_child("2025-10-01", CALIBRATION, DRIFT)
    assert sorted(upstream.partitions_subset.get_partition_keys()) == ["2025-09-01", "2025-10-01"]
    first = partitions().monthly.get_first_partition_key()
    upstream = graph.get_parent_partition_keys_for_child(first, CALIBRATION, DRIFT)
    assert list(upstream.partitions_subset.get_partition_keys()) == [first]
    # The other way round: a month's calibration feeds its own drift and the next month's.
    children = graph.get_child_partition_keys_of_parent("2025-09-01", CALIBRATION, DRIFT)
    assert sorted(children) == ["2025-09-01", "2025-10-01"]


def test_change_columns_come_from_the_stored_previous_month(
    instance: dg.DagsterInstance, seeded: pl.DataFrame, dagster_home: Path
) -> None:
    for month in ("2025-09-01", "2025-10-01"):
        assert launch.materialize(settings(), instance, ["confidence_calibration"], [month]).success
    run = launch.materialize(settings(), instance, ["drift_metrics"], ["2025-10-01"])
    assert run.success, run.failures
    storage = resource("asset_storage")
    september, october = (storage.read("confidence_calibration", m) for m in ("2025-09-01", "2025-10-01"))
    row = storage.read("drift_metrics", "2025-10-01").to_dicts()[0]
    assert row["change_ece"] == pytest.approx(october["ece"] - september["ece"])
    assert row["change_max_abs_drift"] == pytest.approx(october["max_abs_drift"] - september["max_abs_drift"])
