"""The polars IO manager stores one file per partition, locally and on S3 (moto over HTTP)."""

from pathlib import Path

import boto3
import dagster as dg
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from opx_learning.resources.io_managers import AssetStorage, PolarsParquetIOManager
from opx_learning.safety.dynamo_backend import create_tables
from opx_learning_tests import wiring
from opx_learning_tests.wiring import resource

daily = dg.DailyPartitionsDefinition(start_date="2025-01-01")


@dg.asset(partitions_def=daily, backfill_policy=dg.BackfillPolicy.single_run())
def numbers(context: dg.AssetExecutionContext) -> dict[str, pl.DataFrame]:
    """One small frame per day of the range."""
    return {key: pl.DataFrame({"day": [key], "n": [int(key[-2:])]}) for key in context.partition_keys}


@dg.asset(partitions_def=daily, backfill_policy=dg.BackfillPolicy.single_run())
def doubled(numbers: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    """Each upstream day, doubled."""
    return {key: frame.with_columns(pl.col("n") * 2) for key, frame in numbers.items()}


def _run(storage: AssetStorage) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [numbers, doubled],
        resources={"io_manager": PolarsParquetIOManager(storage=storage)},
        tags={"dagster/asset_partition_range_start": "2025-03-01", "dagster/asset_partition_range_end": "2025-03-03"},
    )


def test_dagster_io_manager_local_range(tmp_path: Path) -> None:
    storage = AssetStorage(base_uri=str(tmp_path))
    assert _run(storage).success
    assert sorted(p.name for p in (tmp_path / "doubled").iterdir()) == [
        "2025-03-01.parquet",
        "2025-03-02.parquet",
        "2025-03-03.parquet",
    ]
    assert_frame_equal(storage.read("doubled", "2025-03-02"), pl.DataFrame({"day": ["2025-03-02"], "n": [4]}))
    assert storage.read("doubled", "2025-03-04") is None


def test_dagster_io_manager_default_base_follows_backend(opx_home: Path) -> None:
    assert resource("asset_storage").resolved_base() == str(opx_home / "assets")


def test_dagster_io_manager_on_s3(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="opx-assets")
    monkeypatch.setenv("OPX_BACKEND", "aws")
    monkeypatch.setenv("OPX_ASSETS_S3_URI", "s3://opx-assets/dagster")
    create_tables(wiring.settings())  # the config table holds the manifest of stored objects
    storage = resource("asset_storage")
    assert storage.resolved_base() == "s3://opx-assets/dagster"
    assert _run(storage).success
    listed = boto3.client("s3", region_name="us-east-1").list_objects_v2(Bucket="opx-assets", Prefix="dagster/doubled/")
    assert [item["Key"] for item in listed["Contents"]] == [f"dagster/doubled/2025-03-0{day}.parquet" for day in (1, 2, 3)]
    assert_frame_equal(storage.read("doubled", "2025-03-03"), pl.DataFrame({"day": ["2025-03-03"], "n": [6]}))
    storage.write("calibration", "2025-03-01", {"ece": 0.1})
    assert storage.read("calibration", "2025-03-01") == {"ece": 0.1}
    assert storage.read("calibration", "2025-04-01") is None
