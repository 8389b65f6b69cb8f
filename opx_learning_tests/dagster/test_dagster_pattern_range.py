"""A range run of pattern summaries stores exactly what one-partition runs store, gaps included."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from math import comb
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from opx_learning.app import launch
from opx_learning.stores.outcomes import outcome_store
from opx_learning_tests import wiring
from opx_learning_tests.core.test_patterns import outcomes
from opx_learning_tests.wiring import resource, settings

DAYS = ["2025-10-01", "2025-10-02", "2025-10-03", "2025-10-04"]


def test_dagster_range_run_equals_partitions_run_alone(instance: dg.DagsterInstance, dagster_home: Path) -> None:
    day = datetime(2025, 10, 1, tzinfo=UTC)
    rows = (
        [{"recorded_at": day + timedelta(hours=1), "root_cause": "old"}]
        # 2025-10-02 holds no outcome; 2025-10-03 and 10-04: 12 "new" each.
        + [{"recorded_at": day + timedelta(days=2, minutes=i), "root_cause": "new"} for i in range(12)]
        + [{"recorded_at": day + timedelta(days=3, minutes=i), "root_cause": "new"} for i in range(12)]
        + [{"recorded_at": day + timedelta(days=3, hours=2, minutes=i), "root_cause": "fresh"} for i in range(12)]
    )
    outcome_store(wiring.settings()).write(outcomes(rows).with_columns(pl.format("o-{}", pl.int_range(pl.len())).alias("outcome_id")))
    storage = resource("asset_storage")
    alone = {}
    for key in DAYS:
        assert launch.materialize(settings(), instance, ["pattern_summaries_daily"], [key]).success
        alone[key] = storage.read("pattern_summaries_daily", key)
    run = launch.materialize(settings(), instance, ["pattern_summaries_daily"], DAYS)
    assert run.success, run.failures
    for key in DAYS:
        assert_frame_equal(storage.read("pattern_summaries_daily", key), alone[key])
    emerging = {key: alone[key]["emerging_root_causes"][0].to_list() for key in DAYS}
    # 10-03: its baseline is 10-01's one row (10-02 is empty and skipped); "new" 12 of 12 vs 0 of 1:
    # p = C(12, 12) / C(13, 12) = 1/13, not emerging.
    assert emerging["2025-10-03"] == []
    assert alone["2025-10-03"]["emerging_baseline_windows"][0] == 1
    # 10-04: baseline 10-03 and 10-01 (13 outcomes, no "fresh"); "fresh" 12 of 24: p = C(24, 12) / C(37, 12),
    # ranks 1 and 2 of 4 candidates (api and ALL x new, fresh): BH-adjusted 2p < 0.01. "new" 12 vs 12 is not.
    items = emerging["2025-10-04"]
    assert [(e["value"], e["count"], e["baseline_count"]) for e in items] == [("fresh", 12, 0)]
    assert items[0]["p_value"] == pytest.approx(2 * comb(24, 12) / comb(37, 12))
