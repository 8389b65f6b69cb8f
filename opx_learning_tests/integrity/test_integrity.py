"""Integrity: snapshots verified on read, the sweep and `opx-learning verify` find damage, P0 DATA_CORRUPTION."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from opx_learning.backends import guard_for
from opx_learning.cli.main import cli
from opx_learning.config import get_settings
from opx_learning.core.snapshots import build_snapshot
from opx_learning.core.synthetic import generate_outcomes
from opx_learning.core.windows import Window
from opx_learning.integrity.findings import IntegrityError
from opx_learning.integrity.sweep import run_sweep
from opx_learning.safety.models import Principal
from opx_learning.stores.outcomes import outcome_store
from opx_learning.stores.snapshots import SnapshotStore
from opx_learning_tests import wiring
from opx_learning_tests.wiring import resource

START, END = "2025-10-01", "2025-10-08"
WINDOW = ["--start", START, "--end", END]
OPX = Path(sys.executable).with_name("opx-learning")


@pytest.fixture
def home(opx_home: Path) -> Path:
    """A small home: a week of outcomes, one daily snapshot, one asset partition, one audit record."""
    frame = generate_outcomes(START, END, per_day=8, seed=3)
    outcome_store(wiring.settings()).write(frame)
    day = frame.filter(pl.col("recorded_at") < datetime(2025, 10, 3, tzinfo=UTC))
    SnapshotStore(settings=wiring.settings()).append(build_snapshot("DAILY", "2025-10-02", "2025-10-03", day, []))
    resource("asset_storage").write("pattern_summaries_daily", "2025-10-02", pl.DataFrame({"service": ["a"], "n": [1]}))
    audit = guard_for(get_settings()).audit
    record = audit.start("SNAPSHOT", "MANUAL", Principal("alice"))
    audit.complete(record.audit_id, "SUCCESS", results={"snapshots": 1})
    return opx_home


def snapshot_file(home: Path) -> Path:
    return home / "snapshots" / "DAILY" / "2025-10-02T000000.000Z_2025-10-03T000000.000Z" / "v1.json"


def corruption_alerts(home: Path) -> list[dict]:
    path = home / "alerts.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [alert for alert in map(json.loads, lines) if alert["alarm"] == "DATA_CORRUPTION"]


def evidence(home: Path) -> dict[str, bytes]:
    """Every stored file's bytes (the alerts file and SQLite's WAL side files excepted)."""
    return {
        str(path): path.read_bytes()
        for path in sorted(home.rglob("*"))
        if path.is_file() and path.name != "alerts.jsonl" and not path.name.endswith(("-wal", "-shm"))
    }


def verify(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["verify", *args])
    return result.exit_code, result.output


def flip_middle_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_clean_home_verifies_with_exit_0(home: Path) -> None:
    code, output = verify(*WINDOW)
    assert code == 0, output
    assert "1 snapshot versions, 7 outcome partitions, 1 asset partitions" in output
    assert f"local: {home / 'state.db'}" in output
    assert "clean" in output and "DATA_CORRUPTION" not in output
    assert corruption_alerts(home) == []


def test_flipped_snapshot_byte_refused_on_read_and_reported_by_verify(home: Path) -> None:
    path = snapshot_file(home)
    stored = SnapshotStore(settings=wiring.settings()).list()[0]
    flip_middle_byte(path)
    with pytest.raises(IntegrityError, match="DATA_CORRUPTION") as raised:
        SnapshotStore(settings=wiring.settings()).get(stored.snapshot_id)
    assert raised.value.finding.location == str(path)
    [alert] = corruption_alerts(home)
    assert alert["severity"] == "P0" and alert["details"]["where"] == str(path)
    assert alert["details"]["source"] == "read"
    before = evidence(home)

    # The real console script, in its own process group.
    process = subprocess.Popen(
        [str(OPX), "verify", *WINDOW, "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 1, out + err
    report = json.loads(out)
    assert [(f["store"], f["location"]) for f in report["findings"]] == [("snapshots", str(path))]
    assert report["alert"]["severity"] == "P0"
    # The read and the sweep met the same damage: one alert, not two.
    assert [a["dedup_id"] for a in corruption_alerts(home)] == [report["alert"]["dedup_id"]]
    assert evidence(home) == before


def test_same_content_in_other_bytes_is_caught_by_the_manifest(home: Path) -> None:
    path = snapshot_file(home)
    text = path.read_text()
    path.write_text(text.replace("{", "{ ", 1))  # still valid JSON with the same content and hash
    code, output = verify(*WINDOW)
    assert code == 1
    assert f"DATA_CORRUPTION snapshots: {path}: content does not match the manifest" in output


def test_truncated_outcome_partition_is_a_finding(home: Path) -> None:
    path = home / "outcomes" / "recorded_date=2025-10-04" / "part-0.parquet"
    truncate(path)
    before = evidence(home)
    code, output = verify(*WINDOW)
    assert code == 1
    # The digest is checked before any byte is decoded: a truncated file is never handed to the Parquet reader.
    assert f"DATA_CORRUPTION outcomes: {path}: content does not match the manifest" in output
    assert "unreadable Parquet" not in output
    [alert] = corruption_alerts(home)
    assert alert["details"]["where"] == str(path) and alert["details"]["source"] == "verify"
    assert evidence(home) == before


def test_outcome_partition_with_rows_of_another_day_is_a_finding(home: Path) -> None:
    path = home / "outcomes" / "recorded_date=2025-10-05" / "part-0.parquet"
    other = pl.read_parquet(home / "outcomes" / "recorded_date=2025-10-06" / "part-0.parquet")
    other.write_parquet(path)
    report = run_sweep(Window.parse(START, END), wiring.settings())
    assert [(f.store, f.location) for f in report.findings] == [("outcomes", str(path))]
    assert "content does not match the manifest" in report.findings[0].problem


def test_truncated_asset_partition_is_a_finding(home: Path) -> None:
    path = home / "assets" / "pattern_summaries_daily" / "2025-10-02.parquet"
    truncate(path)
    code, output = verify(*WINDOW)
    assert code == 1
    assert f"DATA_CORRUPTION assets: {path}: content does not match the manifest" in output


def test_malformed_audit_row_is_a_finding(home: Path) -> None:
    state = home / "state.db"
    with sqlite3.connect(state) as conn:  # the triggers block UPDATE and DELETE, not INSERT
        conn.execute(
            "INSERT INTO audit (audit_id, operation_type, trigger_type, status, start_time, end_time, duration_ms, "
            "parameters, results, error_message, principal, authority, run_id, version) "
            "VALUES ('CALIBRATION#forged', 'CALIBRATION', 'MANUAL', 'SUCCESS', '2025-10-03T00:00:00.000Z', NULL, NULL, "
            "'{}', 'not json', NULL, 'mallory', 'HUMAN_OPERATOR', NULL, 2)"
        )
        conn.execute(
            "INSERT INTO audit (audit_id, operation_type, trigger_type, status, start_time, end_time, duration_ms, "
            "parameters, results, error_message, principal, authority, run_id, version) "
            "VALUES ('X#1', 'NOT_AN_OPERATION', 'MANUAL', 'RUNNING', 'yesterday', NULL, NULL, "
            "'{}', '{}', NULL, 'mallory', 'GOD', NULL, 1)"
        )
    conn.close()
    code, output = verify(*WINDOW)
    assert code == 1
    assert (
        f"DATA_CORRUPTION audit: {state}#audit/CALIBRATION#forged: end_time missing; terminal record with "
        "duration_ms None (a non-negative integer is required); results is not JSON"
    ) in output
    # A start_time that is no instant is swept whatever the window.
    assert f"{state}#audit/X#1: operation_type 'NOT_AN_OPERATION'" in output
    assert "triggered_by.type 'GOD'" in output and "start_time 'yesterday' is not an ISO-8601 instant" in output
    # Rows inserted outside the store have no link in the hash chain, whatever their shape.
    assert "has no link in the audit chain" in output and output.count("AUDIT_TAMPERED audit:") == 2
    # Today's window holds the record the real audit log wrote, which is well-formed, and X#1 again;
    # the chain is walked whole, so both inserted rows are AUDIT_TAMPERED in any window.
    code, output = verify("--days", "1")
    assert code == 1 and "2 audit records checked; 3 finding(s)" in output, output


def test_verify_bad_input_exits_2(home: Path) -> None:
    assert verify("--days", "0")[0] == 2
    code, output = verify("--start", "not-a-date")
    assert code == 2 and "start: 'not-a-date'" in output
    code, output = verify("--start", END, "--end", START)
    assert code == 2 and "end:" in output
    code, output = verify("--start", START, "--end", END, "--days", "3")
    assert code == 2 and "--days" in output
    assert corruption_alerts(home) == []
