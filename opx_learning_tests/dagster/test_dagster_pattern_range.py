"""A range run of pattern summaries stores exactly what one-partition runs store, gaps included."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
from polars.testing import assert_frame_equal

from opx_learning.defs import launch
from opx_learning.resources.io_managers import AssetStorage
from opx_learning.stores.outcomes import outcome_store
from opx_learning_tests.core.test_patterns import outcomes

DAYS = ["2025-10-01", "2025-10-02", "2025-10-03", "2025-10-04"]


def test_dagster_range_run_equals_partitions_run_alone(instance: dg.DagsterInstance, dagster_home: Path) -> None:
    day = datetime(2025, 10, 1, tzinfo=UTC)
    rows = (
        [{"recorded_at": day + timedelta(hours=1), "root_cause": "old"}]
        # 2025-10-02 holds no outcome; 2025-10-03 and 10-04: 12 "new" each.
        + [{"recorded_at": day + timedelta(days=2, minutes=i), "root_cause": "new"} for i in range(12)]
        + [{"recorded_at": day + timedelta(days=3, minutes=i), "root_cause": "new"} for i in range(12)]
        + [{"recorded_at": day + timedelta(days=3, hours=2, minutes=i), "root_cause": "fresh"} for i in range(9)]
    )
    outcome_store().write(outcomes(rows).with_columns(pl.format("o-{}", pl.int_range(pl.len())).alias("outcome_id")))
    storage = AssetStorage()
    alone = {}
    for key in DAYS:
        assert launch.materialize(instance, ["pattern_summaries_daily"], [key]).success
        alone[key] = storage.read("pattern_summaries_daily", key)
    run = launch.materialize(instance, ["pattern_summaries_daily"], DAYS)
    assert run.success, run.failures
    for key in DAYS:
        assert_frame_equal(storage.read("pattern_summaries_daily", key), alone[key])
    emerging = {key: alone[key]["emerging_root_causes"][0].to_list() for key in DAYS}
    # 10-03 compares with an empty 10-02 (a run of 10-03 alone reads nothing before it): no list.
    assert emerging["2025-10-03"] == []
    # 10-04: "fresh" 9 vs 0, p = 2**-9 < 0.01; "new" 12 vs 12 is not emerging.
    assert [(e["value"], e["count"], e["previous_count"]) for e in emerging["2025-10-04"]] == [("fresh", 9, 0)]
