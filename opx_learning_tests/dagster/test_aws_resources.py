"""The aws backend's Dagster resources reach S3 through dagster-aws's S3Resource (moto over HTTP)."""

from __future__ import annotations

from pathlib import Path

import boto3
import dagster as dg
import polars as pl
import pytest
from dagster_aws.s3 import S3Resource

from opx_learning.build import build_defs, build_resources
from opx_learning.config import ConfigurationError, Settings
from opx_learning.core.synthetic import generate_outcomes
from opx_learning.core.windows import Window
from opx_learning.resources.aws import AwsAssetStorage
from opx_learning.safety.dynamo_backend import create_tables
from opx_learning.stores.outcomes import S3OutcomeStore

BUCKET = "opx-assets-bucket"


def _settings(tmp_path: Path) -> Settings:
    return Settings(
        backend="aws",
        home=tmp_path / "home",
        region="us-east-1",
        assets_s3_uri=f"s3://{BUCKET}/assets",
        outcomes_s3_uri=f"s3://{BUCKET}/outcomes",
    )


def test_asset_storage_and_stores_use_the_s3_resource(aws_env: str, tmp_path: Path) -> None:
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    settings = _settings(tmp_path)
    create_tables(settings)  # the config table holds the manifest of stored objects
    resources = build_resources(settings)
    storage = resources["asset_storage"]
    assert isinstance(storage, AwsAssetStorage) and isinstance(storage.s3, S3Resource)
    assert storage.s3.region_name == "us-east-1"
    assert resources["opx_io_manager"].storage is storage

    frame = pl.DataFrame({"service": ["a", "b"], "total_incidents": [3, 4]})
    uri = storage.write("pattern_summaries_daily", "2026-03-01", frame)
    assert uri == f"s3://{BUCKET}/assets/pattern_summaries_daily/2026-03-01.parquet"
    listed = boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="assets/")["Contents"]
    assert [item["Key"] for item in listed] == ["assets/pattern_summaries_daily/2026-03-01.parquet"]
    assert storage.read("pattern_summaries_daily", "2026-03-01").equals(frame)
    assert storage.read("pattern_summaries_daily", "2026-03-02") is None

    outcomes = resources["outcome_store"].store()
    assert isinstance(outcomes, S3OutcomeStore)
    seeded = generate_outcomes("2026-03-01", "2026-03-03", per_day=10, seed=2)
    assert outcomes.write(seeded) == seeded.height
    assert resources["outcome_store"].store().read(Window.parse("2026-03-01", "2026-03-03")).height == seeded.height
    assert resources["snapshot_store"].store().client is not None


def test_aws_location_shows_its_s3_resource(aws_env: str, tmp_path: Path) -> None:
    defs = build_defs(_settings(tmp_path), key_prefix="cloud")
    dg.Definitions.validate_loadable(defs)
    storage = defs.resources["cloud_asset_storage"]
    assert isinstance(storage, AwsAssetStorage) and storage.base_uri == f"s3://{BUCKET}/assets"


def test_aws_backend_without_dagster_aws_is_a_clear_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    import opx_learning.resources

    # A None entry in sys.modules makes the import fail, as on a machine without the `aws` extra.
    monkeypatch.delitem(sys.modules, "opx_learning.resources.aws", raising=False)
    monkeypatch.delattr(opx_learning.resources, "aws", raising=False)
    monkeypatch.setitem(sys.modules, "dagster_aws", None)
    monkeypatch.setitem(sys.modules, "dagster_aws.s3", None)
    with pytest.raises(ConfigurationError, match=r'needs dagster-aws .*pip install "opx_learning\[aws\]"'):
        build_defs(_settings(tmp_path))
