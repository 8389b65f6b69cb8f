"""Day-partitioned Parquet outcomes on S3 (moto over HTTP): window reads, idempotent writes, backend switch."""

from __future__ import annotations

from datetime import date

import boto3
import polars as pl
import pytest

from opx_learning.core.synthetic import generate_outcomes
from opx_learning.core.windows import Window
from opx_learning.integrity.findings import IntegrityError
from opx_learning.safety.dynamo_backend import create_tables
from opx_learning.stores.outcomes import S3OutcomeStore, load_outcomes, outcome_store
from opx_learning_tests import wiring

URI = "s3://opx-outcomes-bucket/platform/outcomes"


@pytest.fixture
def bucket(aws_env: str) -> str:
    boto3.client("s3").create_bucket(Bucket="opx-outcomes-bucket")
    return URI


def test_round_trip_reads_only_the_window(bucket: str) -> None:
    frame = generate_outcomes("2026-03-01", "2026-03-05", per_day=30, seed=4)
    store = S3OutcomeStore(bucket)
    assert store.write(frame) == frame.height
    assert store.write(frame) == 0  # idempotent by outcome_id
    assert store.days() == [date(2026, 3, d) for d in range(1, 5)]

    # A broken object for a day outside the window must not be touched by the read.
    boto3.client("s3").put_object(
        Bucket="opx-outcomes-bucket", Key="platform/outcomes/recorded_date=2026-03-04/part-0.parquet", Body=b"junk"
    )
    window = Window.parse("2026-03-02", "2026-03-03T12:00:00Z")
    got = store.read(window).sort("outcome_id")
    expected = frame.filter(
        (pl.col("recorded_at") >= window.start) & (pl.col("recorded_at") < window.end)
    ).sort("outcome_id")
    assert got.equals(expected)


def test_aws_backend_uses_s3_when_configured(bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPX_BACKEND", "aws")
    monkeypatch.setenv("OPX_OUTCOMES_S3_URI", bucket)
    create_tables(wiring.settings())  # the config table holds the manifest of stored objects
    store = outcome_store(wiring.settings())
    assert isinstance(store, S3OutcomeStore) and store.location == URI
    frame = generate_outcomes("2026-03-01", "2026-03-03", per_day=20, seed=5)
    store.write(frame)
    assert load_outcomes(store, "2026-03-01", "2026-03-02T23:59:59.999Z").height == frame.height

    # The manifest lists each day object; a deleted one fails the read instead of reading as "no outcomes".
    boto3.client("s3").delete_object(Bucket="opx-outcomes-bucket", Key="platform/outcomes/recorded_date=2026-03-01/part-0.parquet")
    with pytest.raises(IntegrityError, match="listed in the manifest .* but missing"):
        load_outcomes(store, "2026-03-01", "2026-03-02")


def test_not_an_s3_uri_is_refused() -> None:
    with pytest.raises(ValueError, match="not an s3://bucket/prefix URI"):
        S3OutcomeStore("/tmp/outcomes")

