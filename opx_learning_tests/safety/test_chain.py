"""The hash-chained audit trail and threshold history, and the anchor outside state.db, as a careless operator meets them.

Every tampering here is done the way a person with file access would do it: `sqlite3` on
the real `state.db`, copying files between homes, deleting files. The commands run as
real processes.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from opx_learning.safety.chain import Link, compare, genesis, walk
from opx_learning.safety.models import AuthorityType, Principal
from opx_learning.safety.sqlite_backend import SqliteState, open_sqlite
from opx_learning.safety.threshold_store import (
    ProposalStatus,
    SqliteThresholdStore,
    ThresholdProposal,
    ThresholdSet,
)
from opx_learning_tests.exports import record

PRINCIPALS = "principals:\n  ops-admin:\n    authority: EMERGENCY_OVERRIDE\n  alice:\n    authority: ON_CALL_SRE\n"
CALIBRATE = ["trigger", "calibrate", "--start", "2026-01-01", "--end", "2026-02-01"]
ADMIN = Principal("ops-admin", AuthorityType.EMERGENCY_OVERRIDE)
SRE = Principal("alice", AuthorityType.ON_CALL_SRE)


def _run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "opx_learning.cli.main", *args],
        capture_output=True, text=True, check=False, env={**os.environ, **(env or {})}, timeout=300,
    )


@pytest.fixture
def principals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "principals.yaml"
    path.write_text(PRINCIPALS)
    monkeypatch.setenv("OPX_PRINCIPALS", str(path))
    monkeypatch.setenv("OPX_PRINCIPAL", "bob")
    return path


def _alerts(home: Path, severity: str, alarm: str) -> list[dict]:
    path = home / "alerts.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [a for a in map(json.loads, lines) if a["severity"] == severity and a["alarm"] == alarm]


def _sql(home: Path, *statements: str) -> None:
    with sqlite3.connect(home / "state.db") as conn:
        for statement in statements:
            conn.execute(statement)


def _disable(reason: str = "incident") -> None:
    result = _run(["kill-switch", "disable", "--reason", reason, "--principal", "ops-admin"])
    assert result.returncode == 0, result.stderr


def _verify(home: Path) -> tuple[int, str]:
    result = _run(["verify", "--json"])
    return result.returncode, result.stdout


def _problems(stdout: str) -> list[str]:
    return [f["problem"] for f in json.loads(stdout)["findings"] if f["alarm"] == "AUDIT_TAMPERED"]


def _refuses_mismatch(home: Path, needle: str) -> None:
    """`kill-switch status` and a trigger refuse with STATE_MISMATCH naming `needle`, with a P1 alert."""
    status = _run(["kill-switch", "status"])
    assert status.returncode == 1, status.stdout
    assert "STATE_MISMATCH" in status.stderr and needle in status.stderr, status.stderr
    assert "init --adopt" in status.stderr and "Traceback" not in status.stderr
    trigger = _run([*CALIBRATE, "--json"])
    assert trigger.returncode == 1, trigger.stderr
    assert json.loads(trigger.stdout)["skip_reason"] == "STATE_MISMATCH"
    p1 = _alerts(home, "P1", "STATE_MISMATCH")
    assert p1 and needle in p1[-1]["details"]["error"]


def test_an_intact_home_verifies_clean_and_shows_its_chain_heads(opx_home: Path, principals: Path) -> None:
    _disable()
    assert _run(["kill-switch", "enable", "--principal", "ops-admin"]).returncode == 0
    code, out = _verify(opx_home)
    assert code == 0, out
    assert json.loads(out)["stores"]["chain heads"].startswith("audit@4:")
    links = sqlite3.connect(opx_home / "state.db").execute("SELECT kind FROM chain_links ORDER BY seq").fetchall()
    assert [kind for (kind,) in links] == ["KILL_SWITCH_DISABLE:RUNNING", "KILL_SWITCH_DISABLE:SUCCESS",
                                           "KILL_SWITCH_ENABLE:RUNNING", "KILL_SWITCH_ENABLE:SUCCESS"]


def test_dropped_triggers_and_a_deleted_row_are_tampering_not_repaired(opx_home: Path, principals: Path) -> None:
    _disable()
    assert _run(["kill-switch", "enable", "--principal", "ops-admin"]).returncode == 0
    _sql(opx_home, "DROP TRIGGER audit_no_delete",
         "DELETE FROM audit WHERE operation_type = 'KILL_SWITCH_DISABLE'")

    # The next command does not silently recreate the trigger: it refuses and names it.
    _refuses_mismatch(opx_home, "trigger audit_no_delete was missing")
    assert "trigger audit_no_delete was missing" in _alerts(opx_home, "P0", "AUDIT_TAMPERED")[0]["details"]["error"]
    names = {r[0] for r in sqlite3.connect(opx_home / "state.db").execute("SELECT name FROM sqlite_master")}
    assert "audit_no_delete" not in names

    code, out = _verify(opx_home)
    assert code == 1
    problems = _problems(out)
    assert any("trigger audit_no_delete was missing" in p for p in problems)
    assert any("has a link but no longer exists (deleted)" in p for p in problems)
    p0 = [a for a in _alerts(opx_home, "P0", "AUDIT_TAMPERED") if a["details"]["source"] == "verify"]
    assert len(p0) == len(problems) and p0[0]["details"]["chain_heads"].startswith("audit@4:")
    text = _run(["verify"])
    assert text.returncode == 1 and "AUDIT_TAMPERED audit:" in text.stdout


def test_a_running_record_rewritten_to_success_is_detected(opx_home: Path, principals: Path) -> None:
    audit, _, _ = open_sqlite(opx_home / "state.db")
    record = audit.start("CALIBRATION", "MANUAL", SRE, parameters={"start_date": "2026-01-01"})
    # The terminal trigger allows completing a RUNNING row, so no trigger has to be dropped.
    _sql(opx_home, "UPDATE audit SET status = 'SUCCESS', end_time = '2026-12-01T00:00:01.000Z', duration_ms = 1000, "
                   f"results = '{{\"calibration_id\": \"made-up\"}}', version = 2 WHERE audit_id = '{record.audit_id}'")
    code, out = _verify(opx_home)
    assert code == 1
    assert any(f"audit record {record.audit_id} was changed after its last link" in p for p in _problems(out))


def test_an_edited_terminal_record_is_detected(opx_home: Path, principals: Path) -> None:
    audit, _, _ = open_sqlite(opx_home / "state.db")
    record = audit.start("CALIBRATION", "MANUAL", SRE)
    audit.complete(record.audit_id, "FAILED", error_message="boom")
    _sql(opx_home, "DROP TRIGGER audit_terminal_is_final",
         f"UPDATE audit SET status = 'SUCCESS', error_message = NULL WHERE audit_id = '{record.audit_id}'")
    problems = _problems(_verify(opx_home)[1])
    assert any(f"{record.audit_id} was changed after its last link" in p and "FAILED" in p for p in problems)
    assert any("trigger audit_terminal_is_final was missing" in p for p in problems)


def test_an_edited_link_a_gap_and_an_unlinked_record_are_detected(opx_home: Path, principals: Path) -> None:
    _disable()
    audit, _, _ = open_sqlite(opx_home / "state.db")
    audit.start("SNAPSHOT", "MANUAL", SRE)
    _sql(opx_home, "DROP TRIGGER chain_links_no_delete", "DROP TRIGGER chain_links_no_update",
         "DELETE FROM chain_links WHERE seq = 2",
         "UPDATE chain_links SET kind = 'SNAPSHOT:SUCCESS' WHERE seq = 3",
         "INSERT INTO audit SELECT 'CALIBRATION#forged', operation_type, trigger_type, status, start_time, end_time, "
         "duration_ms, parameters, results, error_message, principal, authority, run_id, version FROM audit LIMIT 1")
    problems = _problems(_verify(opx_home)[1])
    assert any("gap: link(s) 2 of the audit chain are missing" in p for p in problems)
    assert any("link 3 was edited" in p for p in problems)
    assert any("CALIBRATION#forged has no link" in p for p in problems)


def test_another_homes_state_db_swapped_in_refuses(opx_home: Path, principals: Path, tmp_path: Path) -> None:
    _disable()
    other = tmp_path / "other"
    assert _run(["init"], {"OPX_HOME": str(other)}).returncode == 0
    for suffix in ("-wal", "-shm"):
        (opx_home / f"state.db{suffix}").unlink(missing_ok=True)
    shutil.copy(other / "state.db", opx_home / "state.db")
    _refuses_mismatch(opx_home, "another state database was swapped in")
    assert _alerts(opx_home, "P1", "STATE_MISMATCH")[-1]["details"]["anchored_heads"]["audit"]["seq"] == 2
    code, out = _verify(opx_home)
    assert code == 1 and any("swapped" in p for p in _problems(out))


def test_a_state_db_rolled_back_to_an_older_copy_refuses(opx_home: Path, principals: Path, tmp_path: Path) -> None:
    backup = tmp_path / "backup.db"
    with sqlite3.connect(opx_home / "state.db") as src, sqlite3.connect(backup) as dst:
        src.backup(dst)
    _disable()
    for suffix in ("-wal", "-shm"):
        (opx_home / f"state.db{suffix}").unlink(missing_ok=True)
    shutil.copy(backup, opx_home / "state.db")
    _refuses_mismatch(opx_home, "rolled back to an older copy")


def test_a_kill_switch_row_edited_to_enabled_after_an_audited_disable_refuses(opx_home: Path, principals: Path) -> None:
    _disable()
    _sql(opx_home, "UPDATE kill_switch SET state = json_set(state, '$.enabled', json('true')) WHERE id = 1")
    _refuses_mismatch(opx_home, "says ENABLED (operations allowed) but the last kill-switch audit record")


def test_deleting_state_and_marker_does_not_let_an_operator_start_over(opx_home: Path, principals: Path) -> None:
    _disable()
    for name in ("state.db", "state.db-wal", "state.db-shm", "state.init.json"):
        (opx_home / name).unlink(missing_ok=True)
    refused = _run(["init"])
    assert refused.returncode == 1 and "INSUFFICIENT_AUTHORITY" in refused.stderr, refused.stdout + refused.stderr
    assert not (opx_home / "state.db").exists()
    assert _run(["kill-switch", "status"]).returncode == 1
    forced = _run(["init", "--force", "--principal", "ops-admin", "--json"])
    assert forced.returncode == 0, forced.stderr
    assert _run(["kill-switch", "status"]).returncode == 0
    audit, _, _ = open_sqlite(opx_home / "state.db")
    record = audit.get(json.loads(forced.stdout)["audit_id"])
    assert record is not None and record.results["old_head"]["audit"]["seq"] == 2
    assert record.results["new_head"]["audit"]["seq"] == 0


def test_adopt_is_emergency_override_only_and_audited(opx_home: Path, principals: Path) -> None:
    _disable()
    _sql(opx_home, "UPDATE kill_switch SET state = json_set(state, '$.enabled', json('true')) WHERE id = 1")
    for who in ("bob", "alice"):
        refused = _run(["init", "--adopt", "--principal", who])
        assert refused.returncode == 1 and "INSUFFICIENT_AUTHORITY" in refused.stderr
    assert _run(["kill-switch", "status"]).returncode == 1
    adopted = _run(["init", "--adopt", "--principal", "ops-admin", "--json"])
    assert adopted.returncode == 0, adopted.stderr
    body = json.loads(adopted.stdout)
    assert body["status"] == "ADOPTED" and body["kill_switch"]["enabled"] is True
    status = _run(["kill-switch", "status", "--json"])
    assert status.returncode == 0 and json.loads(status.stdout)["enabled"] is True
    audit, _, _ = open_sqlite(opx_home / "state.db")
    record = audit.get(body["audit_id"])
    assert record is not None and record.parameters["action"] == "ADOPT" and record.triggered_by == ADMIN
    assert record.operation_type.value == "KILL_SWITCH_ENABLE" and record.status.value == "SUCCESS"
    # The refusals were appended to an intact chain, so adopting keeps its head (the row alone disagreed).
    assert record.results["old_head"]["audit"] == record.results["new_head"]["audit"]
    assert "says ENABLED" in record.results["mismatch"]
    assert _alerts(opx_home, "INFO", "STATE_ADOPTED")
    assert _verify(opx_home)[0] == 0


def test_adopt_recreates_missing_triggers_and_names_them(opx_home: Path, principals: Path) -> None:
    _sql(opx_home, "DROP TRIGGER audit_identity_is_fixed")
    adopted = _run(["init", "--adopt", "--principal", "ops-admin", "--json"])
    assert adopted.returncode == 0, adopted.stderr
    audit, _, _ = open_sqlite(opx_home / "state.db")
    record = audit.get(json.loads(adopted.stdout)["audit_id"])
    assert record is not None and record.results["triggers_recreated"] == ["audit_identity_is_fixed"]
    assert _run(["kill-switch", "status"]).returncode == 0


def test_a_dropped_manifest_trigger_is_tampering_and_adopt_recreates_it(
    opx_home: Path, principals: Path, tmp_path: Path
) -> None:
    export = tmp_path / "export.jsonl"
    export.write_text(json.dumps(record("o-1", "2026-01-05")) + "\n")
    ingested = _run(["ingest", str(export), "--json"])
    assert ingested.returncode == 0, ingested.stderr
    # Edit the stored outcome file's expected hash, as someone hiding an edit of the file would.
    _sql(opx_home, "DROP TRIGGER manifest_no_update", "UPDATE manifest SET sha256 = '" + "0" * 64 + "'")

    _refuses_mismatch(opx_home, "trigger manifest_no_update was missing")
    verify = _run(["verify"])
    assert verify.returncode == 1, verify.stdout
    assert "trigger manifest_no_update was missing" in verify.stdout
    assert "finding(s): AUDIT_TAMPERED, DATA_CORRUPTION" in verify.stdout  # the trigger, and the file against its row

    adopted = _run(["init", "--adopt", "--principal", "ops-admin", "--json"])
    assert adopted.returncode == 0, adopted.stderr
    audit, _, _ = open_sqlite(opx_home / "state.db")
    adoption = audit.get(json.loads(adopted.stdout)["audit_id"])
    assert adoption is not None and adoption.results["triggers_recreated"] == ["manifest_no_update"]
    names = {r[0] for r in sqlite3.connect(opx_home / "state.db").execute("SELECT name FROM sqlite_master")}
    assert "manifest_no_update" in names
    assert _run(["kill-switch", "status"]).returncode == 0


def test_a_home_that_predates_the_chain_is_chained_by_adopt(opx_home: Path, principals: Path) -> None:
    _disable()
    _sql(opx_home, "DROP TABLE chain_links", "DROP TABLE chain_meta")
    for name in ("anchor.db", "anchor.db-wal", "anchor.db-shm"):
        (opx_home / name).unlink(missing_ok=True)
    marker = opx_home / "state.init.json"
    marker.write_text(json.dumps({k: v for k, v in json.loads(marker.read_text()).items() if k != "chain"}))
    _refuses_mismatch(opx_home, "predates the hash-chained audit trail")
    adopted = _run(["init", "--adopt", "--principal", "ops-admin", "--json"])
    assert adopted.returncode == 0, adopted.stderr
    assert json.loads(adopted.stdout)["kill_switch"]["enabled"] is False
    status = _run(["kill-switch", "status", "--json"])
    assert status.returncode == 0 and json.loads(status.stdout)["active"] is True
    assert _verify(opx_home)[0] == 0
    assert "chain" in json.loads(marker.read_text())


def _approve(home: Path, version: int) -> ThresholdSet:
    store = SqliteThresholdStore(SqliteState(home / "state.db"))
    now = datetime(2026, 2, 1, tzinfo=UTC)
    proposal = ThresholdProposal(f"tp-{version:010d}", ProposalStatus.PENDING, {"0.5": 0.4}, {}, SRE, now, "audit-1")
    store.create(proposal)
    approved = ThresholdSet(version, {"0.5": 0.4}, proposal.proposal_id, ADMIN, now, SRE, "audit-2")
    decided = ThresholdProposal(proposal.proposal_id, ProposalStatus.APPROVED, {"0.5": 0.4}, {}, SRE, now, "audit-1",
                                decided_by=ADMIN, decided_at=now, version=version)
    assert store.decide(decided, approved, version - 1)
    return approved


def test_an_edited_threshold_version_is_not_served(opx_home: Path, principals: Path) -> None:
    _approve(opx_home, 1)
    current = _run(["thresholds", "current", "--json"])
    assert current.returncode == 0 and json.loads(current.stdout)["version"] == 1, current.stderr
    # The careless operator drops the trigger, edits the version, and even puts the trigger back.
    _sql(opx_home, "DROP TRIGGER threshold_versions_no_update",
         "UPDATE threshold_versions SET doc = json_set(doc, '$.thresholds.\"0.5\"', 0.1) WHERE version = 1",
         "CREATE TRIGGER threshold_versions_no_update BEFORE UPDATE ON threshold_versions "
         "BEGIN SELECT RAISE(ABORT, 'approved threshold versions cannot change'); END")
    refused = _run(["thresholds", "current", "--json"])
    assert refused.returncode != 0 and "AUDIT_TAMPERED" in refused.stdout + refused.stderr
    assert "threshold version 1" in refused.stdout + refused.stderr
    problems = _problems(_verify(opx_home)[1])
    assert any("threshold version 1 was changed after its last link" in p for p in problems)


def test_a_forged_threshold_version_is_not_served(opx_home: Path, principals: Path) -> None:
    _approve(opx_home, 1)
    _sql(opx_home, "INSERT INTO threshold_versions (version, proposal_id, approved_at, doc) "
                   "SELECT 2, 'tp-forged', approved_at, json_set(doc, '$.version', 2) FROM threshold_versions")
    refused = _run(["thresholds", "current"])
    assert refused.returncode != 0 and "threshold version 2" in refused.stderr and "AUDIT_TAMPERED" in refused.stderr
    assert any("threshold version 2 has no link" in p for p in _problems(_verify(opx_home)[1]))


def test_the_walk_reports_reordering_and_rewrites_after_a_terminal_link() -> None:
    start = genesis("s", "audit")
    one = Link.make("audit", 1, "CALIBRATION:RUNNING", "a", "c1", start)
    two = Link.make("audit", 2, "CALIBRATION:SUCCESS", "a", "c2", one.link_hash)
    three = Link.make("audit", 3, "CALIBRATION:SUCCESS", "a", "c3", two.link_hash)
    assert walk("audit", [one, two], start) == []
    assert "rewritten after it became terminal" in walk("audit", [one, two, three], start)[0].problem
    swapped = [Link.make("audit", 1, two.kind, "a", "c2", start), Link.make("audit", 2, one.kind, "a", "c1", start)]
    assert "does not follow link 1" in walk("audit", swapped, start)[0].problem
    assert compare("audit", [one, two], {"a": "c2"}, "audit record") == []
