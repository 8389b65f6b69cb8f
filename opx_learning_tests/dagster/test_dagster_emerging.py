"""The pattern assets load the emerging root causes' baseline from the outcome store, skipping quiet days."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from math import comb
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from opx_learning.app import launch
from opx_learning.stores.outcomes import outcome_store
from opx_learning_tests import wiring
from opx_learning_tests.core.test_patterns import outcomes
from opx_learning_tests.wiring import resource, settings


def test_a_cause_new_after_a_quiet_day_is_flagged_alone_and_in_a_range(
    instance: dg.DagsterInstance, dagster_home: Path
) -> None:
    first = datetime(2025, 9, 24, tzinfo=UTC)
    # 09-24..09-30: 20 "disk full" a day; 10-01: nothing at all; 10-02: 20 "disk full" and 12 "cert expired".
    rows = [
        {"recorded_at": first + timedelta(days=d, minutes=i), "root_cause": "disk full"}
        for d in range(7)
        for i in range(20)
    ]
    day = datetime(2025, 10, 2, tzinfo=UTC)
    rows += [{"recorded_at": day + timedelta(minutes=i), "root_cause": "disk full"} for i in range(20)]
    rows += [{"recorded_at": day + timedelta(hours=3, minutes=i), "root_cause": "cert expired"} for i in range(12)]
    outcome_store(wiring.settings()).write(outcomes(rows).with_columns(pl.format("o-{}", pl.int_range(pl.len())).alias("outcome_id")))
    storage = resource("asset_storage")

    alone = launch.materialize(settings(), instance, ["pattern_summaries_daily"], ["2025-10-02"])
    assert alone.success, alone.failures
    stored = storage.read("pattern_summaries_daily", "2025-10-02")
    all_row = stored.filter(pl.col("service") == "ALL").to_dicts()[0]
    # Baseline: 09-27..09-30 (10-01 is empty and skipped) = 80 outcomes, no "cert expired".
    # p = C(32, 12) / C(112, 12); 4 candidates (api and ALL x disk full, cert expired), cert ranks 1 and 2: 2p.
    assert all_row["emerging_root_causes"] == [
        {"value": "cert expired", "count": 12, "baseline_count": 0, "p_value": pytest.approx(2 * comb(32, 12) / comb(112, 12))}
    ]
    assert all_row["emerging_baseline_windows"] == 4
    meta = alone.metadata["pattern_summaries_daily"]["2025-10-02"]
    assert (meta["emerging_root_causes"], meta["emerging_baseline_windows"]) == (1, 4)

    ranged = launch.materialize(settings(), instance, ["pattern_summaries_daily"], ["2025-10-01", "2025-10-02", "2025-10-03"])
    assert ranged.success, ranged.failures
    assert storage.read("pattern_summaries_daily", "2025-10-02").equals(stored)
