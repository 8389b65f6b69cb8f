"""The batching SQLite event log records exactly what Dagster's own SQLite event log records, in the same files."""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from dagster._core.instance.ref import InstanceRef
from dagster._core.storage.event_log import SqliteEventLogStorage

from opx_learning.app import launch
from opx_learning.app.event_log import BatchingSqliteEventLogStorage
from opx_learning_tests.wiring import settings

DAYS = [f"2025-10-{day:02d}" for day in range(1, 11)]
PLAIN_YAML = "telemetry:\n  enabled: false\n"


def _open(home: Path) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))


def _record(instance: dg.DagsterInstance) -> dict[str, object]:
    """What the UI reads of a range run: its event types, each partition's numbers and check results."""
    run = instance.get_runs(limit=1)[0]
    types = Counter(entry.dagster_event.event_type_value for entry in instance.all_logs(run.run_id) if entry.is_dagster_event)
    totals = {}
    for record in instance.fetch_materializations(dg.AssetKey("pattern_summaries_daily"), limit=100).records:
        materialization = record.asset_materialization
        totals[materialization.partition] = materialization.metadata["total_incidents"].value
    checks = Counter(
        (record.partition, record.status.value)
        for record in instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(dg.AssetKey("pattern_summaries_daily"), "window_has_outcomes"), limit=100
        )
    )
    entries = {}
    for record in instance.get_asset_records([dg.AssetKey("daily_outcomes"), dg.AssetKey("pattern_summaries_daily")]):
        last = record.asset_entry.last_materialization_record
        entries[record.asset_entry.asset_key.to_user_string()] = (
            last.event_log_entry.dagster_event.partition,
            record.asset_entry.last_run_id == run.run_id,
        )
    index = Path(instance.event_log_storage.path_for_shard("index"))
    with sqlite3.connect(index) as db:
        tags = sorted(db.execute("select asset_key, key, count(*) from asset_event_tags group by 1, 2"))
        planned = sorted(db.execute("select asset_key, count(*) from event_logs where dagster_event_type = ? group by 1",
                                    ("ASSET_MATERIALIZATION_PLANNED",)))
    return {"types": types, "totals": totals, "checks": checks, "entries": entries, "tags": tags, "planned": planned}


def test_a_range_run_records_the_same_events_as_dagsters_own_storage(
    instance: dg.DagsterInstance, dagster_home: Path, seeded: pl.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert type(instance.event_log_storage) is BatchingSqliteEventLogStorage
    batches: list[int] = []
    storage = instance.event_log_storage
    real = storage.store_event_batch

    def counted(events: list) -> None:
        batches.append(len(events))
        real(events)

    monkeypatch.setattr(storage, "store_event_batch", counted)
    assert launch.materialize(settings(), instance, ["daily_outcomes", "pattern_summaries_daily"], DAYS).success
    ours = _record(instance)
    # Dagster handed the planned events and each step's per-partition materializations over in batches.
    assert max(batches) >= len(DAYS), batches

    plain_home = tmp_path / "plain_dagster_home"
    plain_home.mkdir()
    (plain_home / "dagster.yaml").write_text(PLAIN_YAML)
    with _open(plain_home) as plain:
        assert type(plain.event_log_storage) is SqliteEventLogStorage
        assert launch.materialize(settings(), plain, ["daily_outcomes", "pattern_summaries_daily"], DAYS).success
        theirs = _record(plain)

    assert ours == theirs
    # Every partition has its own count (taken from the outcome store) and a resolved check.
    days = seeded.with_columns(pl.col("recorded_at").dt.strftime("%Y-%m-%d").alias("day"))
    expected = dict(days.filter(pl.col("day").is_in(DAYS)).group_by("day").len().iter_rows())
    assert ours["totals"] == expected
    assert {status for _, status in ours["checks"]} == {"SUCCEEDED"}
    assert sorted(partition for partition, _ in ours["checks"]) == DAYS

    # The files are Dagster's own layout: Dagster's class reads what the batching one wrote.
    (dagster_home / "dagster.yaml").write_text(PLAIN_YAML)
    with _open(dagster_home) as reread:
        assert type(reread.event_log_storage) is SqliteEventLogStorage
        assert _record(reread) == ours
        assert reread.get_materialized_partitions(dg.AssetKey("daily_outcomes")) == set(DAYS)


def test_batching_is_a_setting_of_the_instance_using_the_storage_not_of_the_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DAGSTER_EVENT_BATCH_SIZE", raising=False)
    homes = {}
    ours = "event_log_storage:\n  module: opx_learning.app.event_log\n  class: BatchingSqliteEventLogStorage\n"
    for name, yaml, config in (
        ("default", ours, ""),
        ("configured", ours, "    event_batch_size: 50\n"),
        ("off", ours, "    event_batch_size: 0\n"),
        ("plain", PLAIN_YAML, None),
    ):
        homes[name] = tmp_path / name
        homes[name].mkdir()
        if config is not None:
            yaml += f"  config:\n    base_dir: {homes[name] / 'history' / 'runs'}\n{config}"
        (homes[name] / "dagster.yaml").write_text(yaml)

    def sizes() -> dict[str, tuple[int, bool]]:
        found = {}
        for name, home in homes.items():
            with _open(home) as instance:
                # What Dagster's instance asks before it hands a batch to the storage.
                found[name] = (instance._get_event_batch_size(), instance._is_batch_writing_enabled())
        return found

    assert sizes() == {"default": (10000, True), "configured": (50, True), "off": (0, False), "plain": (0, False)}
    # Dagster's own variable, when set, still decides (for every instance, as Dagster reads it).
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "7")
    assert sizes() == {"default": (7, True), "configured": (7, True), "off": (7, True), "plain": (7, True)}
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "0")
    assert {size for size, _ in sizes().values()} == {0}
