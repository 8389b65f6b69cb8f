"""An unusable home, as an operator meets it: every command names the path and the cause, exits 1, raises a P1.

The commands run in real processes; `restricted()` makes `chmod` bind even when the tests run as root.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from opx_learning_tests.permissions import mode, restricted

CALIBRATE = ["trigger", "calibrate", "--start", "2026-01-01", "--end", "2026-02-01"]
COMMANDS = [
    ["kill-switch", "status"],
    ["kill-switch", "disable", "--reason", "r", "--principal", "ops-admin"],
    ["audit", "list"],
    ["status"],
    ["verify"],
    ["summary"],
    ["seed", "--days", "1", "--per-day", "5"],
    ["init"],
    CALIBRATE,
    ["snapshot", "list"],
    ["thresholds", "current"],
    ["checklist"],
    ["demo", "--days", "32", "--per-day", "5"],
]


def _run(args: list[str], prefix: list[str] | None = None, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*(prefix or []), sys.executable, "-m", "opx_learning.cli.main", *args],
        capture_output=True, text=True, check=False, timeout=300, env={**os.environ, **(env or {})},
    )


def _alerts(home: Path) -> list[dict]:
    path = home / "alerts.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_unreadable_home_stops_every_command(opx_home: Path, tmp_path: Path) -> None:
    prefix = restricted()
    (tmp_path / "principals.yaml").write_text("principals:\n  ops-admin:\n    authority: EMERGENCY_OVERRIDE\n")
    env = {"OPX_PRINCIPALS": str(tmp_path / "principals.yaml")}
    before = json.loads(_run(["audit", "list", "--json"]).stdout)
    with mode(opx_home, 0o000):
        for command in COMMANDS:
            result = _run(command, prefix, env)
            label = " ".join(command)
            assert result.returncode == 1, (label, result.stdout, result.stderr)
            assert "Traceback" not in result.stderr, (label, result.stderr)
            assert f"Error: KILL_SWITCH_UNAVAILABLE: {opx_home}: permission denied" in result.stderr, label
            assert "nothing was run (fail closed)" in result.stderr, label
            # The alert sink is inside the unreadable home: the command says the P1 was not recorded.
            assert "the P1 KILL_SWITCH_UNAVAILABLE alert could not be recorded" in result.stderr, label
        as_json = _run(["kill-switch", "status", "--json"], prefix, env)
    assert as_json.returncode == 1 and "Traceback" not in as_json.stderr
    body = json.loads(as_json.stdout)
    assert (body["error"], body["path"], body["alert_recorded"]) == ("KILL_SWITCH_UNAVAILABLE", str(opx_home), False)
    assert body["cause"].startswith("permission denied (no read, write or search access")

    # Nothing happened while the home was unreadable: no audit record, no outcome, no alert line.
    assert json.loads(_run(["audit", "list", "--json"]).stdout) == before
    assert not list(opx_home.glob("outcomes/**/*.parquet"))
    assert _alerts(opx_home) == []
    assert json.loads(_run(["kill-switch", "status", "--json"]).stdout)["enabled"] is True


def test_unreadable_state_database_raises_a_recorded_p1(opx_home: Path) -> None:
    prefix = restricted()
    state = opx_home / "state.db"
    with mode(state, 0o000):
        status = _run(["kill-switch", "status"], prefix)
        refused = _run([*CALIBRATE, "--json"], prefix)
    assert status.returncode == 1 and "Traceback" not in status.stderr
    assert f"KILL_SWITCH_UNAVAILABLE: {state}: permission denied (no read or write access" in status.stderr
    assert f"P1 KILL_SWITCH_UNAVAILABLE alert raised ({opx_home / 'alerts.jsonl'})" in status.stderr
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert json.loads(refused.stdout)["error"] == "KILL_SWITCH_UNAVAILABLE"
    alerts = _alerts(opx_home)
    # Both commands fall in one 5-minute dedup bucket: one P1, naming the database.
    assert [(a["severity"], a["alarm"], a["details"]["path"]) for a in alerts] == [
        ("P1", "KILL_SWITCH_UNAVAILABLE", str(state))
    ]
    assert alerts[0]["details"]["command"] == "opx-learning kill-switch status"


def test_unwritable_home_directory_is_refused(opx_home: Path) -> None:
    # Readable but not writable: SQLite could not create its journal files beside the database.
    with mode(opx_home, 0o555):
        result = _run(["kill-switch", "status"], restricted())
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"KILL_SWITCH_UNAVAILABLE: {opx_home}: permission denied (no write access" in result.stderr


def test_unreadable_outcome_partition_is_home_unavailable(opx_home: Path) -> None:
    prefix = restricted()
    assert _run(["seed", "--start", "2026-01-01", "--days", "3", "--per-day", "20"]).returncode == 0
    partition = opx_home / "outcomes" / "recorded_date=2026-01-02"
    assert partition.is_dir()
    with mode(partition, 0o000):
        summary = _run(["summary", "--start", "2026-01-01", "--days", "3"], prefix)
        verify = _run(["verify", "--json"], prefix)
    for result in (summary, verify):
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr
    assert f"Error: HOME_UNAVAILABLE: {partition}/" in summary.stderr
    assert "Permission denied; the command stopped there" in summary.stderr
    body = json.loads(verify.stdout)
    assert body["error"] == "HOME_UNAVAILABLE" and body["path"].startswith(f"{partition}/")
    alerts = [alert for alert in _alerts(opx_home) if alert["alarm"] == "HOME_UNAVAILABLE"]
    assert len(alerts) == 1 and alerts[0]["severity"] == "P1"
    assert alerts[0]["details"]["path"].startswith(f"{partition}/")


def test_unwritable_snapshot_directory_is_refused_before_the_command(opx_home: Path) -> None:
    snapshots = opx_home / "snapshots"
    snapshots.mkdir()
    with mode(snapshots, 0o555):
        result = _run(["snapshot", "list"], restricted())
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"HOME_UNAVAILABLE: {snapshots}: permission denied (no write access" in result.stderr
    assert "nothing was run" in result.stderr
    assert [alert["alarm"] for alert in _alerts(opx_home)] == ["HOME_UNAVAILABLE"]


def test_home_that_is_a_file_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "not-a-directory"
    home.write_text("x")
    result = _run(["audit", "list"], env={"OPX_HOME": str(home), "OPX_BACKEND": "local"})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"KILL_SWITCH_UNAVAILABLE: {home}: not a directory" in result.stderr
    assert "the P1 KILL_SWITCH_UNAVAILABLE alert could not be recorded" in result.stderr
    assert home.read_text() == "x"


def test_stored_control_characters_never_reach_the_terminal_raw(opx_home: Path, tmp_path: Path) -> None:
    import polars as pl

    from opx_learning.core.synthetic import generate_outcomes
    from opx_learning.stores.outcomes import outcome_store
    from opx_learning_tests import wiring

    cause, service = "\x1b[31mdisk full\x1b[0m", "pay\x1b]0;owned\x07ments"
    frame = generate_outcomes("2026-01-01", "2026-01-02", per_day=40, seed=5)
    frame = frame.with_columns(root_cause=pl.lit(cause), service=pl.lit(service))
    assert outcome_store(wiring.settings()).write(frame) == frame.height
    (tmp_path / "principals.yaml").write_text("principals:\n  ops-admin:\n    authority: EMERGENCY_OVERRIDE\n")
    env = {"OPX_PRINCIPALS": str(tmp_path / "principals.yaml")}
    reason = "incident \x1b[2J\u202eevil"
    assert _run(["kill-switch", "disable", "--reason", reason, "--principal", "ops-admin"], env=env).returncode == 0

    window = ["--start", "2026-01-01", "--days", "1"]
    for command in (["summary", *window], ["kill-switch", "status"], ["audit", "list"]):
        raw = subprocess.run([sys.executable, "-m", "opx_learning.cli.main", *command], capture_output=True,
                             check=False, timeout=120, env={**os.environ, **env})
        assert raw.returncode == 0, raw.stderr
        assert b"\x1b" not in raw.stdout and b"\x07" not in raw.stdout, command
        assert "\u202e".encode() not in raw.stdout, command
    summary = _run(["summary", *window], env=env).stdout
    assert "\\x1b[31mdisk full\\x1b[0m" in summary and "pay\\x1b]0;owned\\x07ments" in summary
    assert "reason:        incident \\x1b[2J\\u202eevil" in _run(["kill-switch", "status"], env=env).stdout
    # --json stays true JSON: the stored text comes back exactly.
    body = json.loads(_run(["summary", *window, "--json"], env=env).stdout)
    assert body["patterns"][0]["top_root_causes"][0]["value"] == cause
    assert json.loads(_run(["kill-switch", "status", "--json"], env=env).stdout)["reason"] == reason
