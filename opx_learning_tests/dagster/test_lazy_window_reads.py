"""Assets read a window's days lazily: one scan of the stored days, only the columns a query uses."""

import re
from datetime import date, timedelta
from pathlib import Path

import boto3
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from opx_learning.core.schema import OUTCOME_COLUMNS
from opx_learning.core.synthetic import generate_outcomes
from opx_learning.core.validation import validate_outcomes
from opx_learning.core.windows import Window, day_window
from opx_learning.defs.outcomes import scan_window_outcomes
from opx_learning.resources.io_managers import AssetStorage
from opx_learning.safety.dynamo_backend import create_tables
from opx_learning.stores.outcomes import outcome_store
from opx_learning_tests import wiring
from opx_learning_tests.wiring import resource

FIRST = date(2026, 1, 1)
DAYS = [(FIRST + timedelta(days=i)).isoformat() for i in range(5)]
WINDOW = Window(day_window(FIRST).start, day_window(FIRST + timedelta(days=4)).end)


def _seed(storage: AssetStorage, stored_days: list[str]) -> pl.DataFrame:
    """Outcomes in the store for the five days, `daily_outcomes` stored for `stored_days`; the expected window."""
    store = outcome_store(wiring.settings())
    store.write(generate_outcomes("2026-01-01", "2026-01-06", per_day=40, seed=3))
    for day in stored_days:
        storage.write("daily_outcomes", day, validate_outcomes(store.read(day_window(date.fromisoformat(day)))).valid)
    return validate_outcomes(store.read(WINDOW)).valid


def _projected_columns(plan: str) -> list[int]:
    return [int(count) for count in re.findall(r"PROJECT (\d+)/\d+ COLUMNS", plan)]


def test_window_is_a_lazy_scan_of_the_stored_days_reading_only_the_columns_used(opx_home: Path) -> None:
    storage = resource("asset_storage")
    stored = [day for day in DAYS if day != "2026-01-03"]
    expected = _seed(storage, stored)

    frame = scan_window_outcomes(storage, resource("outcome_store"), WINDOW)

    assert isinstance(frame, pl.LazyFrame)
    plan = frame.select("service").explain()
    # The stored days are scanned (two runs around the missing day), each reading `service`
    # and the `recorded_at` of the window filter only, not the 13 columns.
    assert plan.count("Parquet SCAN") == 2
    assert _projected_columns(plan)[:1] == [2] and all(count <= 2 for count in _projected_columns(plan))
    # The day missing from `daily_outcomes` comes from the outcome store, validated, in day order.
    assert_frame_equal(frame.collect(), expected.sort("recorded_at", maintain_order=True))
    assert frame.collect().columns == list(OUTCOME_COLUMNS)


def test_window_days_are_read_when_collected_not_when_planned(opx_home: Path) -> None:
    storage = resource("asset_storage")
    _seed(storage, DAYS)
    frame = scan_window_outcomes(storage, resource("outcome_store"), WINDOW)
    day = storage.read("daily_outcomes", "2026-01-02")
    assert isinstance(day, pl.DataFrame) and day.height > 1
    storage.write("daily_outcomes", "2026-01-02", day.head(1))

    counted = frame.filter(pl.col("recorded_at") < day_window(date(2026, 1, 3)).start).select(pl.len()).collect()

    first = storage.read("daily_outcomes", "2026-01-01")
    assert isinstance(first, pl.DataFrame)
    assert counted.item() == first.height + 1


def test_window_reads_stored_days_from_s3(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="opx-assets")
    monkeypatch.setenv("OPX_BACKEND", "aws")
    monkeypatch.setenv("OPX_ASSETS_S3_URI", "s3://opx-assets/dagster")
    create_tables(wiring.settings())  # the config table holds the manifest of stored objects
    storage = resource("asset_storage")
    frames = {day: generate_outcomes(day, DAYS[i + 1] if i + 1 < len(DAYS) else "2026-01-06", per_day=30, seed=i)
              for i, day in enumerate(DAYS)}
    for day, frame in frames.items():
        storage.write("daily_outcomes", day, frame)

    sources = storage.parquet_sources("daily_outcomes", [*DAYS, "2026-01-09"])
    window = scan_window_outcomes(storage, resource("outcome_store"), WINDOW)

    assert list(sources) == DAYS and all(isinstance(value, bytes) for value in sources.values())
    assert_frame_equal(window.collect(), pl.concat(frames.values()))
