"""Snapshot references, the previous snapshot of a cadence, `opx-learning snapshot …` and the asset's diff metadata."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from opx_learning.core.snapshots import build_snapshot
from opx_learning.defs.snapshot_diffs import snapshot_diff_metadata
from opx_learning.stores.snapshot_refs import (
    SnapshotNotFound,
    previous_of_cadence,
    resolve,
    select,
)
from opx_learning.stores.snapshots import SnapshotStore
from opx_learning_tests import wiring

DAY = timedelta(days=1)
JAN = [datetime(2026, 1, day, tzinfo=UTC) for day in range(1, 8)]


def row(service: str, start: datetime, total: int, fp: int, cause: str) -> dict[str, Any]:
    return {"summary_id": f"{service}{start:%d}", "service": service, "window_start": start,
            "window_end": start + DAY, "version": "1", "total_incidents": total, "true_positives": total - fp,
            "false_positives": fp, "fp_rate": fp / total,
            "top_root_causes": [{"value": cause, "count": total, "share": 1.0}]}


def daily(start: datetime, total: int, fp: int, cause: str) -> Any:
    return build_snapshot("DAILY", start, start + DAY, None, [row("checkout", start, total, fp, cause)])


@pytest.fixture
def store(opx_home: Path) -> SnapshotStore:
    """Days 1, 2 (two versions) and 4 of January, and a weekly snapshot, in the local store."""
    snapshots = SnapshotStore(settings=wiring.settings())
    snapshots.append(daily(JAN[0], 10, 1, "disk full"))
    snapshots.append(daily(JAN[1], 10, 2, "disk full"))
    snapshots.append(daily(JAN[1], 12, 3, "oom"))  # new content for day 2: version 2
    snapshots.append(daily(JAN[3], 5, 0, "oom"))
    snapshots.append(build_snapshot("WEEKLY", JAN[3], JAN[3] + 7 * DAY, None, []))
    return snapshots


def test_resolve_by_id_prefix_window_and_version(store: SnapshotStore) -> None:
    v1, v2 = store.versions("DAILY", JAN[1], JAN[2])
    assert resolve(store, v1.snapshot_id).version == 1
    assert resolve(store, v1.snapshot_id[:10]).snapshot_id == v1.snapshot_id
    assert resolve(store, f"{v1.snapshot_id}@v2").snapshot_id == v2.snapshot_id
    assert resolve(store, v1.snapshot_id, version=2).snapshot_id == v2.snapshot_id
    assert resolve(store, "DAILY:2026-01-02..2026-01-03").version == 2  # a window means its latest version
    assert resolve(store, "daily:2026-01-02..2026-01-03@1").snapshot_id == v1.snapshot_id
    with pytest.raises(SnapshotNotFound, match="has no v3"):
        resolve(store, "DAILY:2026-01-02..2026-01-03@v3")
    with pytest.raises(SnapshotNotFound, match="no DAILY snapshot of 2026-01-03"):
        resolve(store, "DAILY:2026-01-03..2026-01-04")
    with pytest.raises(ValueError, match="neither a snapshot id"):
        resolve(store, "abc")
    with pytest.raises(ValueError, match="type 'HOURLY' is not one of"):
        resolve(store, "HOURLY:2026-01-02..2026-01-03")


def test_previous_of_cadence_is_the_latest_version_of_the_nearest_earlier_window(store: SnapshotStore) -> None:
    day4 = store.latest("DAILY", JAN[3], JAN[4])
    previous = previous_of_cadence(store, day4)
    assert (previous.window_start, previous.version) == (JAN[1], 2)  # day 3 was never snapshotted
    assert previous_of_cadence(store, store.latest("DAILY", JAN[0], JAN[1])) is None
    assert previous_of_cadence(store, store.latest("WEEKLY", JAN[3], JAN[3] + 7 * DAY)) is None
    assert [e.window.start for e in select(store, "daily", since="2026-01-02", until="2026-01-03")] == [JAN[1]] * 2


def test_asset_metadata_shows_the_diff_against_the_previous_day(store: SnapshotStore) -> None:
    day2 = store.latest("DAILY", JAN[1], JAN[2])
    metadata = snapshot_diff_metadata(store, day2)
    assert metadata["diff_against"] == store.latest("DAILY", JAN[0], JAN[1]).snapshot_id
    assert (metadata["diff_new_root_causes"], metadata["diff_retired_root_causes"]) == (1, 1)
    table = metadata["diff"]
    assert isinstance(table, dg.MarkdownMetadataValue)
    assert "| checkout: fp rate | 0.100 | 0.250 | +0.150 |" in table.value
    assert "| root cause 'oom' | – | 12 (checkout) | new |" in table.value
    first = snapshot_diff_metadata(store, store.latest("DAILY", JAN[0], JAN[1]))
    assert first["diff_against"] == "-" and "No earlier DAILY snapshot" in first["diff"].value


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "opx_learning.cli.main", *args], capture_output=True, text=True,
                          env={**os.environ}, timeout=120, check=False)


def test_snapshot_commands(store: SnapshotStore) -> None:
    listed = _cli("snapshot", "list", "--type", "DAILY", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [(r["window_start"][:10], r["version"]) for r in rows] == [
        ("2026-01-01", 1), ("2026-01-02", 1), ("2026-01-02", 2), ("2026-01-04", 1)]
    shown = _cli("snapshot", "show", rows[1]["snapshot_id"][:12], "--version", "2", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["snapshot_id"] == rows[2]["snapshot_id"]

    diff = _cli("snapshot", "diff", "DAILY:2026-01-01..2026-01-02", "DAILY:2026-01-02..2026-01-03", "--json")
    assert diff.returncode == 0, diff.stderr
    body = json.loads(diff.stdout)
    assert body["root_causes"]["new"] == [{"root_cause": "oom", "count": 12, "services": ["checkout"]}]
    assert body["service_metrics"]["checkout"]["total_incidents"] == {"from": 10, "to": 12, "delta": 2}
    text = _cli("snapshot", "diff", f"{rows[1]['snapshot_id']}", f"{rows[1]['snapshot_id']}@v2")
    assert text.returncode == 0 and "| checkout: fp rate | 0.200 | 0.250 | +0.050 |" in text.stdout

    missing = _cli("snapshot", "diff", "DAILY:2026-01-01..2026-01-02", "WEEKLY:2026-01-11..2026-01-18")
    assert missing.returncode == 2 and "no WEEKLY snapshot of 2026-01-11" in missing.stderr
    assert "Traceback" not in missing.stderr
    bad = _cli("snapshot", "list", "--since", "yesterday-ish")
    assert bad.returncode == 2 and "since: 'yesterday-ish'" in bad.stderr
