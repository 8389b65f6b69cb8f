"""The manifest of stored objects: digests recorded on write, checked before every read, compared both ways by verify."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import random
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from opx_learning.cli.main import cli
from opx_learning.core.snapshots import build_snapshot
from opx_learning.core.synthetic import generate_outcomes
from opx_learning.integrity.findings import IntegrityError
from opx_learning.integrity.manifest import Ledger, SqliteManifest
from opx_learning.stores.blobs import put_bytes
from opx_learning.stores.outcomes import load_outcomes, outcome_store
from opx_learning.stores.snapshots import SnapshotStore
from opx_learning_tests import wiring

START, END = "2025-10-01", "2025-10-08"


def _rows(home: Path) -> list[tuple[str, str, str, int]]:
    with sqlite3.connect(home / "state.db") as conn:
        rows = conn.execute("SELECT store, key, sha256, size FROM manifest ORDER BY seq").fetchall()
    conn.close()
    return rows


def _alerts(home: Path) -> list[dict]:
    path = home / "alerts.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [alert for alert in map(json.loads, lines) if alert["alarm"] == "DATA_CORRUPTION"]


def _verify(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["verify", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


@pytest.fixture
def home(opx_home: Path) -> Path:
    """A week of outcomes, two versions of one daily snapshot, one asset partition."""
    frame = generate_outcomes(START, END, per_day=8, seed=3)
    outcome_store(wiring.settings()).write(frame)
    store = SnapshotStore(settings=wiring.settings())
    day = frame.filter(pl.col("recorded_at") < datetime(2025, 10, 3, tzinfo=UTC))
    store.append(build_snapshot("DAILY", "2025-10-02", "2025-10-03", day.head(3), []))
    store.append(build_snapshot("DAILY", "2025-10-02", "2025-10-03", day, []))
    wiring.resource("asset_storage").write("pattern_summaries_daily", "2025-10-02", pl.DataFrame({"service": ["a"], "n": [13]}))
    return opx_home


def test_every_write_records_the_digest_of_the_bytes_on_disk(home: Path) -> None:
    rows = _rows(home)
    stores = {"assets": home / "assets", "outcomes": home / "outcomes", "snapshots": home / "snapshots"}
    assert {store for store, *_ in rows} == set(stores)
    assert len([row for row in rows if row[0] == "outcomes"]) == 7 and len([r for r in rows if r[0] == "snapshots"]) == 2
    for store, key, sha, size in rows:
        data = (stores[store] / key).read_bytes()
        assert (hashlib.sha256(data).hexdigest(), len(data)) == (sha, size)
    with sqlite3.connect(home / "state.db") as conn, pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM manifest")
    with sqlite3.connect(home / "state.db") as conn, pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE manifest SET sha256 = 'x'")
    assert _verify("--start", START, "--end", END)[0] == 0


@pytest.mark.parametrize("seed", range(4))
def test_single_bit_flips_anywhere_in_an_asset_file_fail_reads_and_verify(home: Path, seed: int) -> None:
    path = home / "assets" / "pattern_summaries_daily" / "2025-10-02.parquet"
    original = path.read_bytes()
    rng = random.Random(seed)
    for _ in range(3):
        damaged = bytearray(original)
        position = rng.randrange(len(damaged))
        damaged[position] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(damaged))
        with pytest.raises(IntegrityError, match="content does not match the manifest"):
            wiring.resource("asset_storage").read("pattern_summaries_daily", "2025-10-02")
        code, output = _verify()
        assert code == 1, output
        assert f"DATA_CORRUPTION assets: {path}: content does not match the manifest" in output
        assert "Traceback" not in output
        path.write_bytes(original)
    assert _alerts(home) and all(alert["severity"] == "P0" for alert in _alerts(home))
    assert {alert["details"]["where"] for alert in _alerts(home)} == {str(path)}
    assert wiring.resource("asset_storage").read("pattern_summaries_daily", "2025-10-02")["n"].to_list() == [13]


def test_a_deleted_latest_snapshot_version_is_a_rollback_not_a_new_start(home: Path) -> None:
    folder = home / "snapshots" / "DAILY" / "2025-10-02T000000.000Z_2025-10-03T000000.000Z"
    (folder / "v2.json").unlink()
    store = SnapshotStore(settings=wiring.settings())
    with pytest.raises(IntegrityError, match="v2.json: listed in the manifest .* but missing"):
        store.latest("DAILY", "2025-10-02", "2025-10-03")
    # Appending reads the latest first: it refuses instead of writing a different v2 over the gap.
    with pytest.raises(IntegrityError):
        store.append(build_snapshot("DAILY", "2025-10-02", "2025-10-03", None, []))
    assert sorted(path.name for path in folder.iterdir()) == ["v1.json"]
    code, output = _verify()
    assert code == 1 and f"{folder / 'v2.json'}: listed in the manifest" in output


def test_a_deleted_window_and_an_unknown_file_are_both_findings(home: Path) -> None:
    folder = home / "snapshots" / "DAILY" / "2025-10-02T000000.000Z_2025-10-03T000000.000Z"
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()
    stray = home / "assets" / "pattern_summaries_daily" / "2025-10-03.parquet"
    stray.write_bytes((home / "assets" / "pattern_summaries_daily" / "2025-10-02.parquet").read_bytes())
    code, output = _verify()
    assert code == 1
    assert f"{folder / 'v1.json'}: listed in the manifest" in output and f"{folder / 'v2.json'}: listed" in output
    assert f"{stray}: not in the manifest of stored objects" in output
    assert "3 P0 DATA_CORRUPTION alert(s)" in output
    with pytest.raises(IntegrityError, match="not in the manifest"):
        wiring.resource("asset_storage").read("pattern_summaries_daily", "2025-10-03")


def test_a_deleted_outcome_partition_fails_the_read_instead_of_reading_as_empty(home: Path) -> None:
    (home / "outcomes" / "recorded_date=2025-10-04" / "part-0.parquet").unlink()
    with pytest.raises(IntegrityError, match="recorded_date=2025-10-04/part-0.parquet: listed in the manifest"):
        load_outcomes(outcome_store(wiring.settings()), START, END)
    # A window that does not touch the day still reads.
    generated = generate_outcomes(START, END, per_day=8, seed=3)
    expected = generated.filter(pl.col("recorded_at") < datetime(2025, 10, 3, tzinfo=UTC)).height
    assert load_outcomes(outcome_store(wiring.settings()), "2025-10-01", "2025-10-03").height == expected


def test_an_edited_calibration_is_never_proposed(opx_home: Path) -> None:
    storage = wiring.resource("asset_storage")
    storage.write("confidence_calibration", "2026-01-01", {"calibration_id": "c1", "recommended_thresholds": {"0.8": 0.9}})
    path = opx_home / "assets" / "confidence_calibration" / "2026-01-01.json"
    path.write_text(path.read_text().replace("0.9", "0.1"))
    result = subprocess.run(
        [sys.executable, "-m", "opx_learning.cli.main", "thresholds", "propose", "--month", "2026-01"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode != 0
    assert "DATA_CORRUPTION" in result.stdout + result.stderr and "Traceback" not in result.stderr
    assert [alert["details"]["where"] for alert in _alerts(opx_home)] == [str(path)]


def _write_many(path: str, manifest_path: str, marker: int, count: int) -> None:
    ledger = Ledger(SqliteManifest(manifest_path), "assets", str(Path(path).parent.parent))
    for round_ in range(count):
        ledger.write(path, bytes([marker]) * (4096 + round_ % 7))


def _put_many(path: str, marker: int, count: int) -> None:
    for round_ in range(count):
        put_bytes(path, bytes([marker]) * (65536 + round_))


def test_concurrent_writers_never_collide_and_the_manifest_names_the_winner(opx_home: Path) -> None:
    target = opx_home / "assets" / "x" / "p.json"
    target.parent.mkdir(parents=True)
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_write_many, args=(str(target), str(opx_home / "state.db"), m, 40)) for m in (1, 2, 3)]
    for process in writers:
        process.start()
    seen = 0
    while any(process.is_alive() for process in writers):
        if target.exists():
            data = target.read_bytes()
            assert len(set(data)) == 1 and 4096 <= len(data) < 4096 + 7  # one writer's whole object, never a mix
            seen += 1
    for process in writers:
        process.join()
        assert process.exitcode == 0
    assert seen
    entry = SqliteManifest(opx_home / "state.db").entry("assets", "x/p.json")
    data = target.read_bytes()
    assert entry is not None and (entry.sha256, entry.size) == (hashlib.sha256(data).hexdigest(), len(data))
    assert not [path for path in target.parent.iterdir() if path.name != "p.json"]  # no temporary file left


def test_concurrent_plain_writers_and_a_reader_see_whole_objects(tmp_path: Path) -> None:
    target = tmp_path / "blob.bin"
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_put_many, args=(str(target), m, 60)) for m in (7, 8, 9)]
    for process in writers:
        process.start()
    while any(process.is_alive() for process in writers):
        if target.exists():
            data = target.read_bytes()
            assert len(set(data)) == 1 and 65536 <= len(data) < 65536 + 60
    for process in writers:
        process.join()
        assert process.exitcode == 0
    assert [path.name for path in tmp_path.iterdir()] == ["blob.bin"]


def test_a_run_reading_a_damaged_partition_fails_without_computing(home: Path) -> None:
    day_file = home / "outcomes" / "recorded_date=2025-10-04" / "part-0.parquet"
    data = bytearray(day_file.read_bytes())
    data[len(data) // 3] ^= 0x10
    day_file.write_bytes(bytes(data))
    result = subprocess.run(
        [sys.executable, "-m", "opx_learning.cli.main", "trigger", "extract-patterns",
         "--start", "2025-10-04", "--end", "2025-10-05", "--json"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr
    body = json.loads(result.stdout)
    record = json.loads(subprocess.run(
        [sys.executable, "-m", "opx_learning.cli.main", "audit", "get", body["audit_id"], "--json"],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout)
    assert record["status"] == "FAILED" and "DATA_CORRUPTION" in record["error_message"]
    assert str(day_file) in record["error_message"]
    assert not (home / "assets" / "pattern_summaries_daily" / "2025-10-04.parquet").exists()
    assert str(day_file) in {alert["details"]["where"] for alert in _alerts(home)}


def test_adopting_accepts_the_current_content_by_appending_rows(home: Path) -> None:
    from opx_learning.backends import backend_for
    from opx_learning.integrity.manifest import adopt_objects

    asset = home / "assets" / "pattern_summaries_daily" / "2025-10-02.parquet"
    pl.DataFrame({"service": ["a"], "n": [14]}).write_parquet(asset)  # changed (restored from another copy, say)
    stray = home / "assets" / "pattern_summaries_daily" / "2025-10-05.json"
    stray.write_text("{}")  # unknown
    gone = home / "snapshots" / "DAILY" / "2025-10-02T000000.000Z_2025-10-03T000000.000Z" / "v2.json"
    gone.unlink()  # removed
    before = len(_rows(home))
    assert _verify()[0] == 1
    counts = adopt_objects(backend_for(wiring.settings()).ledgers())
    assert counts["assets"] == {"adopted": 1, "changed": 1, "removed": 0}
    assert counts["snapshots"] == {"adopted": 0, "changed": 0, "removed": 1}
    assert counts["outcomes"] == {"adopted": 0, "changed": 0, "removed": 0}
    assert len(_rows(home)) == before + 3  # appended, nothing rewritten
    code, output = _verify()
    assert code == 0, output
    assert adopt_objects(backend_for(wiring.settings()).ledgers())["assets"] == {"adopted": 0, "changed": 0, "removed": 0}


def test_init_adopt_accepts_the_stored_objects_and_audits_it(home: Path, tmp_path: Path) -> None:
    from opx_learning.backends import guard_for

    principals = tmp_path / "principals.yaml"
    principals.write_text("principals:\n  ops-admin:\n    authority: EMERGENCY_OVERRIDE\n")
    env = {**os.environ, "OPX_PRINCIPALS": str(principals)}
    stray = home / "assets" / "pattern_summaries_daily" / "2025-10-06.json"
    stray.write_text('{"restored": true}')
    assert _verify()[0] == 1
    adopted = subprocess.run([sys.executable, "-m", "opx_learning.cli.main", "init", "--adopt", "--principal", "ops-admin",
                              "--json"], capture_output=True, text=True, timeout=300, check=False, env=env)
    assert adopted.returncode == 0, adopted.stderr
    record = guard_for(wiring.settings()).audit.get(json.loads(adopted.stdout)["audit_id"])
    assert record.results["objects"]["assets"] == {"adopted": 1, "changed": 0, "removed": 0}
    assert wiring.resource("asset_storage").read("pattern_summaries_daily", "2025-10-06") == {"restored": True}
