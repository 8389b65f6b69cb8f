"""The local snapshot store is append-only, idempotent and safe under concurrent appends."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from opx_learning.core.schema import OUTCOME_SCHEMA
from opx_learning.core.snapshots import Snapshot, build_snapshot
from opx_learning.integrity.findings import IntegrityError
from opx_learning.stores.snapshots import SnapshotStore
from opx_learning_tests import wiring

JAN1 = datetime(2026, 1, 1, tzinfo=UTC)
JAN2 = datetime(2026, 1, 2, tzinfo=UTC)
DAY_DIR = "2026-01-01T000000.000Z_2026-01-02T000000.000Z"


def outcomes(ids: list[str], at: datetime = JAN1) -> pl.DataFrame:
    """Canonical outcomes recorded at `at`, one per id."""
    n = len(ids)
    return pl.DataFrame(
        {
            "outcome_id": ids,
            "incident_id": ids,
            "service": ["checkout"] * n,
            "recorded_at": [at] * n,
            "validated_at": [at + timedelta(minutes=1)] * n,
            "true_positive": [True] * n,
            "false_positive": [False] * n,
            "root_cause": ["disk full"] * n,
            "resolution_type": ["FIXED"] * n,
            "ttd_ms": [1.0] * n,
            "ttr_ms": [2.0] * n,
            "predicted_confidence": [0.5] * n,
            "human_confidence_rating": [None] * n,
        },
        schema=OUTCOME_SCHEMA,
    )


def daily(ids: list[str]) -> Snapshot:
    return build_snapshot("DAILY", JAN1, JAN2, outcomes(ids), [])


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_default_root_is_under_opx_home(opx_home: Path) -> None:
    assert SnapshotStore(settings=wiring.settings()).root == opx_home / "snapshots"


def test_append_writes_version_one_and_reads_it_back(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    stored = store.append(daily(["a", "b"]))

    assert files(tmp_path) == [f"DAILY/{DAY_DIR}/v1.json"]
    assert stored.version == 1
    expected_id = hashlib.sha256(b"DAILY:2026-01-01T00:00:00.000Z:2026-01-02T00:00:00.000Z:1").hexdigest()
    assert stored.snapshot_id == expected_id
    on_disk = json.loads((tmp_path / "DAILY" / DAY_DIR / "v1.json").read_text())
    assert on_disk["content_hash"] == stored.content_hash
    assert on_disk["ids"]["outcome_ids"] == ["a", "b"]
    assert store.get(expected_id) == stored
    assert store.latest("DAILY", "2026-01-01", "2026-01-01T23:59:59.999Z") == stored


def test_rerun_unchanged_is_idempotent(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    first = store.append(daily(["b", "a"]))
    mtime = (tmp_path / "DAILY" / DAY_DIR / "v1.json").stat().st_mtime_ns
    again = store.append(daily(["a", "b"]))  # same inputs, other row order, later created_at

    assert (again.snapshot_id, again.content_hash, again.version) == (first.snapshot_id, first.content_hash, 1)
    assert again.created_at == first.created_at  # the stored snapshot is returned unchanged
    assert files(tmp_path) == [f"DAILY/{DAY_DIR}/v1.json"]
    assert (tmp_path / "DAILY" / DAY_DIR / "v1.json").stat().st_mtime_ns == mtime


def test_changed_inputs_add_a_version_beside_the_old_one(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    v1 = store.append(daily(["a"]))
    v1_bytes = (tmp_path / "DAILY" / DAY_DIR / "v1.json").read_bytes()
    v2 = store.append(daily(["a", "late"]))

    assert files(tmp_path) == [f"DAILY/{DAY_DIR}/v1.json", f"DAILY/{DAY_DIR}/v2.json"]
    assert (tmp_path / "DAILY" / DAY_DIR / "v1.json").read_bytes() == v1_bytes
    assert v2.version == 2
    assert v2.snapshot_id == hashlib.sha256(b"DAILY:2026-01-01T00:00:00.000Z:2026-01-02T00:00:00.000Z:2").hexdigest()
    assert v2.content_hash != v1.content_hash
    assert [s.version for s in store.versions("DAILY", JAN1, JAN2)] == [1, 2]
    assert store.latest("DAILY", JAN1, JAN2) == v2
    assert store.get(v1.snapshot_id) == v1
    # Going back to the first content is a change against the latest: a third version.
    v3 = store.append(daily(["a"]))
    assert (v3.version, v3.content_hash) == (3, v1.content_hash)


def test_append_accepts_builder_arguments(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    stored = store.append(
        {"snapshot_type": "custom", "start": "2026-01-01", "end": "2026-01-03", "outcomes": outcomes(["x"]), "summaries": None}
    )
    assert (stored.snapshot_type, stored.counts["outcomes"], stored.version) == ("CUSTOM", 1, 1)
    assert files(tmp_path) == ["CUSTOM/2026-01-01T000000.000Z_2026-01-03T000000.000Z/v1.json"]


def test_list_get_and_unknown_ids(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    assert store.list() == []
    assert store.latest("DAILY", JAN1, JAN2) is None
    assert store.versions("DAILY", JAN1, JAN2) == []
    day2 = store.append(build_snapshot("DAILY", JAN2, JAN2 + timedelta(days=1), outcomes([]), []))
    day1 = store.append(daily(["a"]))
    day1b = store.append(daily(["a", "b"]))
    monthly = store.append(build_snapshot("MONTHLY", "2026-01-01", "2026-02-01", outcomes(["a"]), []))

    assert day2.empty
    assert [s.snapshot_id for s in store.list()] == [s.snapshot_id for s in (day1, day1b, day2, monthly)]
    assert store.list("monthly") == [monthly]
    with pytest.raises(KeyError, match="nope"):
        store.get("nope")
    with pytest.raises(ValueError, match="snapshot_type: 'YEARLY'"):
        store.list("YEARLY")


def test_a_tampered_file_is_refused(tmp_path: Path, opx_home: Path) -> None:
    store = SnapshotStore(tmp_path)
    stored = store.append(daily(["a"]))
    path = tmp_path / "DAILY" / DAY_DIR / "v1.json"
    data = json.loads(path.read_text())
    data["ids"]["outcome_ids"] = ["forged"]
    path.write_text(json.dumps(data))
    with pytest.raises(IntegrityError, match="content_hash"):
        store.get(stored.snapshot_id)


def _append_many(root: str, tag: str, count: int, barrier: Any) -> list[int]:
    store = SnapshotStore(root)
    barrier.wait(timeout=60)  # both processes start appending together
    return [store.append(daily([f"{tag}-{i}"])).version for i in range(count)]


def _append_same(root: str) -> int:
    return SnapshotStore(root).append(daily(["same"])).version


def test_two_processes_never_overwrite_each_other(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
        barrier = manager.Barrier(2)
        runs = [pool.submit(_append_many, str(tmp_path), tag, 8, barrier) for tag in ("p", "q")]
        versions = [v for run in runs for v in run.result()]

    assert sorted(versions) == list(range(1, 17))
    stored = SnapshotStore(tmp_path).versions("DAILY", JAN1, JAN2)
    assert [s.version for s in stored] == list(range(1, 17))
    assert sorted(s.outcome_ids[0] for s in stored) == sorted(f"{t}-{i}" for t in "pq" for i in range(8))
    assert not [p for p in tmp_path.rglob("*.tmp")]

    same = tmp_path / "same"
    with ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
        results = list(pool.map(_append_same, [str(same)] * 4))
    # Identical content appended concurrently is stored once.
    assert results == [1, 1, 1, 1]
    assert files(same) == [f"DAILY/{DAY_DIR}/v1.json"]


def test_s3_store_is_append_only_and_idempotent(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3

    from opx_learning.config import get_settings
    from opx_learning.stores.snapshots import S3SnapshotStore, snapshot_store

    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="opx-assets")
    monkeypatch.setenv("OPX_BACKEND", "aws")
    monkeypatch.setenv("OPX_ASSETS_S3_URI", "s3://opx-assets/prod")
    from opx_learning.safety.dynamo_backend import create_tables

    create_tables(get_settings())  # the config table holds the manifest of stored objects
    store = snapshot_store(get_settings())
    assert isinstance(store, S3SnapshotStore)
    assert store.location == "s3://opx-assets/prod/snapshots/"

    v1 = store.append(daily(["a"]))
    assert store.append(daily(["a"])) == v1
    v2 = store.append(daily(["a", "b"]))
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="opx-assets")["Contents"])
    assert keys == [f"prod/snapshots/DAILY/{DAY_DIR}/v1.json", f"prod/snapshots/DAILY/{DAY_DIR}/v2.json"]
    assert (v1.version, v2.version) == (1, 2)
    assert store.get(v1.snapshot_id) == v1
    assert store.latest("DAILY", JAN1, JAN2) == v2
    assert [s.version for s in store.list("DAILY")] == [1, 2]
    # The conditional put refuses to replace an existing version.
    assert not store._create("DAILY", v1.window, 1, "{}")
    body = s3.get_object(Bucket="opx-assets", Key=f"prod/snapshots/DAILY/{DAY_DIR}/v1.json")["Body"].read()
    assert Snapshot.from_json(body) == v1


def test_s3_store_needs_an_s3_uri(opx_home: Path) -> None:
    from opx_learning.stores.snapshots import S3SnapshotStore, snapshot_store

    assert type(snapshot_store(wiring.settings())) is SnapshotStore  # local backend
    with pytest.raises(ValueError, match="OPX_ASSETS_S3_URI: '/tmp/x'"):
        S3SnapshotStore("/tmp/x")
