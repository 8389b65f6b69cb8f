"""`opx-learning init`, lost safety state and store naming, as an operator meets them (real processes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

PRINCIPALS = "principals:\n  ops-admin:\n    authority: EMERGENCY_OVERRIDE\n"
CALIBRATE = ["trigger", "calibrate", "--start", "2026-01-01", "--end", "2026-02-01"]


def _run(args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "opx_learning.cli.main", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=300,
    )


@pytest.fixture
def principals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "principals.yaml"
    path.write_text(PRINCIPALS)
    monkeypatch.setenv("OPX_PRINCIPALS", str(path))
    monkeypatch.setenv("OPX_PRINCIPAL", "bob")
    return path


def _p1_alerts(home: Path) -> list[dict]:
    alerts = home / "alerts.jsonl"
    lines = alerts.read_text().splitlines() if alerts.exists() else []
    return [alert for alert in map(json.loads, lines) if alert["severity"] == "P1"]


def test_unknown_backend_is_a_configuration_error(opx_home: Path) -> None:
    result = _run(["kill-switch", "status"], {"OPX_BACKEND": "dynamodb"})
    assert result.returncode == 2
    assert "'local'" in result.stderr and "'aws'" in result.stderr and "Traceback" not in result.stderr


def test_two_working_directories_share_the_default_home(tmp_path: Path, principals: Path) -> None:
    env = {"HOME": str(tmp_path / "user"), "OPX_HOME": "", "OPX_BACKEND": ""}
    one, two = tmp_path / "a", tmp_path / "b"
    one.mkdir()
    two.mkdir()
    assert _run(["init"], env, cwd=one).returncode == 0
    disabled = _run(["kill-switch", "disable", "--reason", "incident", "--principal", "ops-admin", "--json"], env, cwd=one)
    assert disabled.returncode == 0, disabled.stderr
    store = f"local: {tmp_path / 'user' / '.opx' / 'state.db'}"
    assert json.loads(disabled.stdout)["store"] == store
    status = json.loads(_run(["kill-switch", "status", "--json"], env, cwd=two).stdout)
    assert status["active"] is True and status["store"] == store
    assert f"store:         {store}" in _run(["kill-switch", "status"], env, cwd=two).stdout


@pytest.mark.parametrize("how", ["truncate", "delete"])
def test_lost_state_after_disable_refuses_triggers(opx_home: Path, principals: Path, how: str) -> None:
    assert _run(["kill-switch", "disable", "--reason", "incident", "--principal", "ops-admin"]).returncode == 0
    state = opx_home / "state.db"
    if how == "truncate":
        state.write_bytes(b"")
    else:
        state.unlink()

    refused = _run(CALIBRATE)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "refused (KILL_SWITCH_UNAVAILABLE)" in refused.stderr and "Traceback" not in refused.stderr
    assert "opx-learning init --force" in refused.stderr and f"store: local: {state}" in refused.stderr
    assert [alert["alarm"] for alert in _p1_alerts(opx_home)][:1] == ["KILL_SWITCH_UNAVAILABLE"]
    assert (state.stat().st_size == 0) if how == "truncate" else not state.exists()

    as_json = json.loads(_run([*CALIBRATE, "--json"]).stdout)
    assert as_json["skip_reason"] == "KILL_SWITCH_UNAVAILABLE" and as_json["store"] == f"local: {state}"
    status = _run(["kill-switch", "status", "--json"])
    assert status.returncode == 1 and json.loads(status.stdout)["error"] == "KILL_SWITCH_UNAVAILABLE"


def test_deleted_config_item_on_aws_refuses_triggers(aws_env: str, principals: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPX_BACKEND", "aws")
    assert _run(["aws", "init"]).returncode == 0
    disabled = _run(["kill-switch", "disable", "--reason", "incident", "--principal", "ops-admin", "--json"])
    assert disabled.returncode == 0, disabled.stderr
    assert json.loads(disabled.stdout)["store"].startswith("aws: DynamoDB tables opx-automation-config (kill switch)")
    boto3.client("dynamodb").delete_item(TableName="opx-automation-config",
                                         Key={"PK": {"S": "CONFIG#KILL_SWITCH"}, "SK": {"S": "METADATA"}})

    refused = _run([*CALIBRATE, "--principal", "bob", "--json"])
    assert refused.returncode == 1, refused.stderr
    body = json.loads(refused.stdout)
    assert body["skip_reason"] == "KILL_SWITCH_UNAVAILABLE" and "opx-learning init --force" in body["message"]
    assert body["store"].startswith("aws: ")
    # `aws init` does not silently bring the lost item back as ENABLED.
    assert _run(["aws", "init"]).returncode == 0
    assert _run(["kill-switch", "status"]).returncode == 1
    assert _run(["init", "--force", "--principal", "ops-admin"]).returncode == 0
    assert json.loads(_run(["kill-switch", "status", "--json"]).stdout)["enabled"] is True


def test_init_twice_needs_emergency_override_and_is_audited(tmp_path: Path, principals: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "fresh"
    monkeypatch.setenv("OPX_HOME", str(home))
    first = _run(["init", "--json"])
    assert first.returncode == 0, first.stderr
    body = json.loads(first.stdout)
    assert body["status"] == "INITIALISED" and body["store"] == f"local: {home / 'state.db'}"
    assert body["kill_switch"]["enabled"] is True

    refused = _run(["init", "--force"])
    assert refused.returncode == 1 and "INSUFFICIENT_AUTHORITY" in refused.stderr
    assert "refusal audited as KILL_SWITCH_ENABLE#" in refused.stderr
    assert _run(["kill-switch", "disable", "--reason", "incident", "--principal", "ops-admin"]).returncode == 0
    kept = _run(["init", "--principal", "ops-admin", "--json"])
    assert kept.returncode == 0 and json.loads(kept.stdout)["status"] == "ALREADY_INITIALISED"
    assert json.loads(kept.stdout)["kill_switch"]["active"] is True

    forced = json.loads(_run(["init", "--force", "--principal", "ops-admin", "--json"]).stdout)
    assert forced["status"] == "REINITIALISED" and forced["kill_switch"]["enabled"] is True
    records = json.loads(_run(["audit", "list", "--operation", "KILL_SWITCH_ENABLE", "--json"]).stdout)
    assert [(r["status"], r["triggered_by"]["principal"]) for r in records] == [
        ("SUCCESS", "ops-admin"), ("SKIPPED", "bob"),
    ]
    assert records[0]["audit_id"] == forced["audit_id"] and records[0]["parameters"]["action"] == "REINITIALISE"


def test_never_initialised_home_fails_closed_and_says_init(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "never"
    monkeypatch.setenv("OPX_HOME", str(home))
    status = _run(["kill-switch", "status"])
    assert status.returncode == 1 and "run `opx-learning init`" in status.stderr and "Traceback" not in status.stderr
    refused = _run(CALIBRATE)
    assert refused.returncode == 1 and "KILL_SWITCH_UNAVAILABLE" in refused.stderr
    assert not (home / "state.db").exists()


def test_overlong_reason_is_a_usage_error(opx_home: Path, principals: Path) -> None:
    result = _run(["kill-switch", "disable", "--reason", "r" * 100_000, "--principal", "ops-admin"])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "reason: 100000 characters is too long; at most 1000" in result.stderr
    assert json.loads(_run(["kill-switch", "status", "--json"]).stdout)["enabled"] is True


def test_demo_with_its_state_database_gone_fails_closed(opx_home: Path) -> None:
    import re

    demo = ["demo", "--days", "32", "--per-day", "5", "--end", "2026-02-02"]
    first = _run(demo)  # its checklist may FAIL on so few outcomes; its runs are what matters here
    assert "Traceback" not in first.stderr
    before = json.loads(_run(["audit", "list", "--json"]).stdout)
    assert len(before) == 9  # one record per demo step
    state = opx_home / "state.db"
    aside = opx_home.parent / "state.db.aside"
    state.rename(aside)

    again = _run([*demo, "--json"])
    assert again.returncode == 1, again.stdout + again.stderr
    assert "Traceback" not in again.stderr
    error = json.loads(again.stdout)
    assert error["error"] == "KILL_SWITCH_UNAVAILABLE"
    assert "the demo did not run (fail closed): nothing was seeded, run or audited" in error["message"]
    assert f"state database {state} does not exist" in error["message"]
    assert [alert["alarm"] for alert in _p1_alerts(opx_home)] == ["KILL_SWITCH_UNAVAILABLE"]
    assert not state.exists()

    # Read the trail back: it is unchanged, and no audit id the failed demo printed is missing from it.
    aside.rename(state)
    after = json.loads(_run(["audit", "list", "--json"]).stdout)
    assert after == before
    printed = set(re.findall(r"[A-Z_]+#[0-9a-f]{32}", again.stdout + again.stderr))
    assert printed <= {record["audit_id"] for record in after}
