"""Window bounds are exact on every outcome store, whatever fractional digits a stored instant has."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import polars as pl

from opx_learning.core.synthetic import generate_outcomes
from opx_learning.core.validation import validate_outcomes
from opx_learning.core.windows import Window
from opx_learning.stores.outcomes import (
    DynamoOutcomeStore,
    LocalOutcomeStore,
    OutcomeStore,
    S3OutcomeStore,
    create_table,
    load_outcomes,
    to_items,
)

# recordedAt exactly as the platform may store it, and whether it lies in each window below.
HOUR = Window.parse("2026-01-02T05:00:00Z", "2026-01-02T06:00:00Z")
SUBSECOND = Window.parse("2026-01-02T05:00:00.250Z", "2026-01-02T05:59:59.750Z")
DAY = Window.parse("2026-01-02T00:00:00.000Z", "2026-01-02T23:59:59.999Z")
RECORDED_AT = {
    "day-start": "2026-01-02T00:00:00Z",
    "before-start-us": "2026-01-02T04:59:59.999999Z",
    "before-start-ms": "2026-01-02T04:59:59.999Z",
    "start-bare": "2026-01-02T05:00:00Z",
    "start-ms": "2026-01-02T05:00:00.000Z",
    "start-us": "2026-01-02T05:00:00.000000Z",
    "sub-start-minus-ms": "2026-01-02T05:00:00.249Z",
    "sub-start": "2026-01-02T05:00:00.25Z",
    "sub-end-minus-ms": "2026-01-02T05:59:59.749Z",
    "sub-end": "2026-01-02T05:59:59.750000Z",
    "last-second": "2026-01-02T05:59:59Z",
    "last-ms": "2026-01-02T05:59:59.999Z",
    "last-us": "2026-01-02T05:59:59.999999Z",
    "last-ms-offset": "2026-01-02T05:59:59.999+00:00",
    "end-bare": "2026-01-02T06:00:00Z",
    "end-ms": "2026-01-02T06:00:00.000Z",
    "end-us": "2026-01-02T06:00:00.000000Z",
    "end-offset": "2026-01-02T06:00:00+00:00",
    "day-last-ms": "2026-01-02T23:59:59.999Z",
    "next-day": "2026-01-03T00:00:00.000Z",
}
IN_HOUR = {"start-bare", "start-ms", "start-us", "sub-start-minus-ms", "sub-start", "sub-end-minus-ms", "sub-end",
           "last-second", "last-ms", "last-us", "last-ms-offset"}
IN_SUBSECOND = {"sub-start", "sub-end-minus-ms", "last-second"}
IN_DAY = set(RECORDED_AT) - {"next-day"}


def _rows() -> list[dict[str, Any]]:
    base = generate_outcomes("2026-01-02", days=1, n=1, seed=3).to_dicts()[0]
    return [
        {**base, "outcome_id": name, "recorded_at": text, "validated_at": "2026-01-04T00:00:00Z"}
        for name, text in RECORDED_AT.items()
    ]


def _valid() -> pl.DataFrame:
    result = validate_outcomes(_rows())
    assert result.rejected.height == 0
    return result.valid


def _assert_exact(store: OutcomeStore) -> None:
    assert set(store.read(HOUR)["outcome_id"]) == IN_HOUR
    assert set(store.read(SUBSECOND)["outcome_id"]) == IN_SUBSECOND
    assert set(store.read(DAY)["outcome_id"]) == IN_DAY
    assert set(load_outcomes(store, "2026-01-02T05:00:00.000Z", "2026-01-02T06:00:00.000Z")["outcome_id"]) == IN_HOUR


def test_local_store_bounds_are_exact(tmp_path: Path) -> None:
    store = LocalOutcomeStore(tmp_path / "outcomes")
    assert store.write(_valid()) == len(RECORDED_AT)
    _assert_exact(store)


def test_s3_store_bounds_are_exact(aws_env: str) -> None:
    boto3.client("s3").create_bucket(Bucket="opx-edges")
    store = S3OutcomeStore("s3://opx-edges/outcomes")
    assert store.write(_valid()) == len(RECORDED_AT)
    _assert_exact(store)


def test_dynamo_store_bounds_are_exact_for_every_stored_format(aws_env: str) -> None:
    client = boto3.client("dynamodb", region_name="us-east-1")
    create_table(client, "opx-outcomes")
    table = boto3.resource("dynamodb", region_name="us-east-1").Table("opx-outcomes")
    for item in to_items(_valid()):
        # Store the instant as the platform wrote it, not in our own six-digit form.
        table.put_item(Item={**item, "recordedAt": RECORDED_AT[item["outcomeId"]]})
    stored = client.get_item(TableName="opx-outcomes", Key={"outcomeId": {"S": "last-ms"}})["Item"]
    assert stored["recordedAt"]["S"] == "2026-01-02T05:59:59.999Z"
    store = DynamoOutcomeStore("opx-outcomes", client=client)
    _assert_exact(store)
    assert store.rejected_count == 0

