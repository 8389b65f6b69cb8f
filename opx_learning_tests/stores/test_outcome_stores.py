"""Outcome stores: local Parquet by day, DynamoDB through TimeIndex on a real moto endpoint."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import polars as pl
import pytest

from opx_learning.config import get_settings
from opx_learning.core.synthetic import generate_outcomes
from opx_learning.core.validation import validate_outcomes
from opx_learning.core.windows import Window
from opx_learning.stores.outcomes import (
    DynamoOutcomeStore,
    LocalOutcomeStore,
    create_table,
    load_outcomes,
    outcome_store,
    to_items,
)
from opx_learning_tests import wiring


@pytest.fixture(scope="module")
def outcomes() -> pl.DataFrame:
    return generate_outcomes("2026-01-01", days=4, per_day=150, seed=21)


def by_id(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.sort("outcome_id")


def between(frame: pl.DataFrame, start: datetime, end: datetime) -> pl.DataFrame:
    return frame.filter((pl.col("recorded_at") >= start) & (pl.col("recorded_at") < end))


def at(day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2026, 1, day, hour, minute, tzinfo=UTC)


def test_local_round_trip_and_days(tmp_path: Path, outcomes: pl.DataFrame) -> None:
    store = LocalOutcomeStore(tmp_path / "outcomes")
    assert store.days() == []
    assert store.write(outcomes) == outcomes.height
    assert store.days() == [date(2026, 1, d) for d in range(1, 5)]
    assert sorted(p.parent.name for p in (tmp_path / "outcomes").glob("*/*.parquet")) == [
        f"recorded_date=2026-01-0{d}" for d in range(1, 5)
    ]
    read = store.read(Window(at(1), at(5)))
    assert by_id(read).equals(by_id(outcomes))


def test_local_writes_are_idempotent_and_keep_the_first(tmp_path: Path, outcomes: pl.DataFrame) -> None:
    store = LocalOutcomeStore(tmp_path)
    first_day = outcomes.filter(pl.col("recorded_at") < at(2))
    assert store.write(first_day) == first_day.height
    assert store.write(first_day) == 0
    changed = first_day.head(3).with_columns(pl.lit("rewritten").alias("service"))
    assert store.write(pl.concat([changed, outcomes])) == outcomes.height - first_day.height
    read = store.read(Window(at(1), at(5)))
    assert read.height == outcomes.height
    assert "rewritten" not in read["service"].to_list()
    assert not list(tmp_path.glob("**/*.tmp"))


def test_half_open_window(tmp_path: Path) -> None:
    rows = [
        {**base, "outcome_id": oid, "recorded_at": when, "validated_at": when + timedelta(hours=1)}
        for base in generate_outcomes("2026-01-01", days=1, n=1, seed=1).to_dicts()
        for oid, when in (("start", at(2)), ("inside", at(2, 23, 59)), ("end", at(3)), ("before", at(1, 23, 59)))
    ]
    store = LocalOutcomeStore(tmp_path)
    store.write(validate_outcomes(rows).valid)
    assert sorted(store.read(Window(at(2), at(3)))["outcome_id"]) == ["inside", "start"]
    runbook = load_outcomes(store, "2026-01-02T00:00:00.000Z", "2026-01-02T23:59:59.999Z")
    assert sorted(runbook["outcome_id"]) == ["inside", "start"]
    assert sorted(load_outcomes(store, "2026-01-01", "2026-01-04")["outcome_id"]) == ["before", "end", "inside", "start"]


def test_scan_reads_only_the_window_days(tmp_path: Path, outcomes: pl.DataFrame) -> None:
    store = LocalOutcomeStore(tmp_path)
    store.write(outcomes)
    window = Window(at(2, 6), at(3, 12))
    assert store.files(window) == [store.day_file(date(2026, 1, 2)), store.day_file(date(2026, 1, 3))]
    # Corrupt the other days: a read of the window must not open them.
    store.day_file(date(2026, 1, 1)).write_bytes(b"not parquet")
    store.day_file(date(2026, 1, 4)).unlink()
    read = store.read(window)
    assert by_id(read).equals(by_id(between(outcomes, window.start, window.end)))
    assert store.read(Window(at(20), at(21))).height == 0


def test_load_outcomes_from_every_source(tmp_path: Path, outcomes: pl.DataFrame) -> None:
    expected = by_id(between(outcomes, at(2), at(3)))
    store = LocalOutcomeStore(tmp_path / "store")
    store.write(outcomes)
    jsonl = tmp_path / "outcomes.jsonl"
    jsonl.write_text("\n".join(json.dumps(item, default=float) for item in to_items(outcomes)))
    parquet = tmp_path / "outcomes.parquet"
    outcomes.write_parquet(parquet)
    sources: list[Any] = [store, tmp_path / "store", str(jsonl), parquet, outcomes, outcomes.lazy(), outcomes.to_dicts()]
    for source in sources:
        loaded = load_outcomes(source, "2026-01-02", "2026-01-02T23:59:59.999Z")
        assert by_id(loaded).equals(expected), type(source)


def test_factory_picks_the_backend(opx_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = outcome_store(wiring.settings())
    assert isinstance(store, LocalOutcomeStore)
    assert store.root == opx_home / "outcomes"
    monkeypatch.setenv("OPX_BACKEND", "aws")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("OPX_OUTCOMES_TABLE", "sandbox-outcomes")
    aws = outcome_store(get_settings())
    assert isinstance(aws, DynamoOutcomeStore)
    assert aws.table_name == "sandbox-outcomes"


class CallLog:
    """Records the DynamoDB operations a client sends (botocore's own event hooks)."""

    def __init__(self, client: Any) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        client.meta.events.register("before-call.dynamodb", self)

    def __call__(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        self.calls.append((model.name, params.get("body", params)))

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


@pytest.fixture
def dynamo(aws_env: str) -> DynamoOutcomeStore:
    client = boto3.client("dynamodb", region_name="us-east-1")
    assert client.meta.endpoint_url == aws_env
    assert create_table(client, "opx-outcomes") is True
    assert create_table(client, "opx-outcomes") is False
    return DynamoOutcomeStore("opx-outcomes", client=client)


def test_dynamo_round_trip_uses_query_per_day(dynamo: DynamoOutcomeStore, outcomes: pl.DataFrame) -> None:
    assert dynamo.write(outcomes) == outcomes.height
    log = CallLog(dynamo.client)
    window = Window(at(1), at(5))
    read = dynamo.read(window)
    assert by_id(read).equals(by_id(outcomes))
    assert set(log.names()) == {"Query"}
    assert len(log.calls) == 4
    assert dynamo.days() == [date(2026, 1, d) for d in range(1, 5)]


def test_dynamo_partial_days_pagination_and_items(dynamo: DynamoOutcomeStore, outcomes: pl.DataFrame) -> None:
    dynamo.write(outcomes)
    paged = DynamoOutcomeStore("opx-outcomes", client=dynamo.client, page_size=40)
    log = CallLog(paged.client)
    window = Window(at(1, 13, 30), at(3, 7, 15))
    read = paged.read(window)
    assert by_id(read).equals(by_id(between(outcomes, window.start, window.end)))
    assert set(log.names()) == {"Query"}
    expected_pages = sum(
        between(outcomes, max(window.start, at(d)), min(window.end, at(d + 1))).height // 40 + 1 for d in (1, 2, 3)
    )
    assert len(log.calls) == expected_pages > 3
    one_day = Window(at(2, 10), at(2, 11))
    assert by_id(paged.read(one_day)).equals(by_id(between(outcomes, one_day.start, one_day.end)))
    item = dynamo.client.get_item(TableName="opx-outcomes", Key={"outcomeId": {"S": outcomes["outcome_id"][0]}})["Item"]
    assert set(item) >= {"outcomeId", "recordedDate", "recordedAt", "classification", "timing"}
    assert item["classification"]["M"]["truePositive"]["BOOL"] == outcomes["true_positive"][0]
    assert item["recordedDate"]["S"] == outcomes["recorded_at"][0].date().isoformat()


def test_dynamo_rewrites_are_idempotent_and_bad_items_are_skipped(
    dynamo: DynamoOutcomeStore, outcomes: pl.DataFrame
) -> None:
    day = between(outcomes, at(1), at(2))
    dynamo.write(day)
    dynamo.write(day)
    dynamo.client.put_item(
        TableName="opx-outcomes",
        Item={
            "outcomeId": {"S": "broken"},
            "recordedDate": {"S": "2026-01-01"},
            "recordedAt": {"S": "2026-01-01T05:00:00.000Z"},
            "service": {"S": "   "},
        },
    )
    read = dynamo.read(Window(at(1), at(2)))
    assert by_id(read).equals(by_id(day))
    assert dynamo.rejected_count == 1
    assert load_outcomes(dynamo, "2026-01-01", "2026-01-01T23:59:59.999Z").height == day.height
