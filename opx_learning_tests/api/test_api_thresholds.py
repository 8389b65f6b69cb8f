"""Threshold change requests end to end: a real calibration, `opx-learning thresholds` and the REST routes.

The principals file (OPX_PRINCIPALS) names two ON_CALL_SRE principals, alice and erin; alice
proposes, cannot approve her own proposal (CLI exit 1, REST 403), erin can; the CLI list and
`GET /learning/thresholds` then show the approved set with its approver.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from opx_learning.resources.io_managers import AssetStorage
from opx_learning_tests.api.conftest import TOKENS, Server, auth

SRES = {**TOKENS, "erin": ("ON_CALL_SRE", "erin-token")}


def _principals(path: Path) -> Path:
    lines = ["principals:"]
    for name, (authority, token) in SRES.items():
        lines += [f'  "{name}":', f"    authority: {authority}",
                  f'    token_sha256: "{hashlib.sha256(token.encode()).hexdigest()}"']
    path.write_text("\n".join(lines) + "\n")
    return path


def _cli(server: Server, principals: Path, who: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OPX_BACKEND": "local", "OPX_HOME": str(server.settings.home),
           "OPX_PRINCIPALS": str(principals), "OPX_PRINCIPAL": who}
    return subprocess.run([sys.executable, "-m", "opx_learning.cli.main", "thresholds", *args],
                          capture_output=True, text=True, env=env, timeout=120, check=False)


def _approve(server: Server, proposal_id: str, token: str) -> Any:
    return server.client.post(f"/learning/thresholds/proposals/{proposal_id}/approve", headers=auth(token))


def test_proposer_cannot_approve_a_second_sre_can(server_factory: Callable[..., Server], tmp_path: Path) -> None:
    principals = _principals(tmp_path / "sres.yaml")
    server = server_factory({"OPX_PRINCIPALS": str(principals)})
    calibrated = server.client.post("/learning/calibrate", json={"startDate": "2026-01-01", "endDate": "2026-02-01"},
                                    headers=auth("alice-token"))
    assert calibrated.status_code == 202, calibrated.text
    assert server.wait_for(calibrated.json()["auditId"], timeout=120)["status"] == "SUCCESS"
    stored = AssetStorage(base_uri=str(server.settings.home / "assets")).read("confidence_calibration", "2026-01-01")
    recommended = stored["recommended_thresholds"]

    proposed = _cli(server, principals, "alice", "propose", "--month", "2026-01", "--json")
    assert proposed.returncode == 0, proposed.stderr
    proposal = json.loads(proposed.stdout)
    pid = proposal["id"]
    assert (proposal["status"], proposal["proposer"], proposal["thresholds"]) == ("PENDING", "alice", recommended)
    assert proposal["source"]["calibration_id"] == stored["calibration_id"]

    # The proposer cannot approve: not from the CLI, not over REST; both refusals audited.
    own_cli = _cli(server, principals, "alice", "approve", pid)
    assert own_cli.returncode == 1 and "four eyes: alice proposed" in own_cli.stderr
    assert "refusal audited as THRESHOLD_APPROVAL#" in own_cli.stderr
    own_rest = _approve(server, pid, "alice-token")
    assert own_rest.status_code == 403 and own_rest.json()["error"] == "INSUFFICIENT_AUTHORITY"
    refusal = server.audit(own_rest.json()["auditId"])
    assert (refusal["status"], refusal["results"]["skip_reason"]) == ("SKIPPED", "INSUFFICIENT_AUTHORITY")
    assert server.client.get("/learning/thresholds", headers=auth("alice-token")).status_code == 404
    assert _approve(server, pid, "bob-token").status_code == 403  # HUMAN_OPERATOR
    assert server.client.post(f"/learning/thresholds/proposals/{pid}/approve").status_code == 401

    # A second ON_CALL_SRE principal can.
    approved = _approve(server, pid, "erin-token")
    assert approved.status_code == 200, approved.text
    assert approved.json()["current"]["version"] == 1
    assert server.audit(approved.json()["auditId"])["status"] == "SUCCESS"

    listed = _cli(server, principals, "bob", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    [row] = json.loads(listed.stdout)
    assert {k: row[k] for k in ("id", "status", "proposer", "approver", "thresholds", "version")} == {
        "id": pid, "status": "APPROVED", "proposer": "alice", "approver": "erin", "thresholds": recommended,
        "version": 1}
    current = server.client.get("/learning/thresholds", headers=auth("bob-token"))
    assert current.status_code == 200, current.text
    body = current.json()
    assert (body["version"], body["approver"], body["proposer"], body["thresholds"]) == (1, "erin", "alice",
                                                                                         recommended)
    assert body["approvedBy"] == {"type": "ON_CALL_SRE", "principal": "erin"}
    assert body["calibrationId"] == stored["calibration_id"]

    again = _approve(server, pid, "admin-token")
    assert again.status_code == 409 and again.json()["error"] == "PROPOSAL_NOT_PENDING"
    no_reason = server.client.post(f"/learning/thresholds/proposals/{pid}/reject", json={}, headers=auth("erin-token"))
    assert no_reason.status_code == 400 and "reason" in no_reason.json()["message"]
    unknown = _approve(server, "tp-0000000000", "erin-token")
    assert unknown.status_code == 404


def test_kill_switch_blocks_approvals_over_rest_and_cli(server_factory: Callable[..., Server], tmp_path: Path) -> None:
    principals = _principals(tmp_path / "sres.yaml")
    server = server_factory({"OPX_PRINCIPALS": str(principals)})
    calibration = {"calibration_id": "c" * 64, "window_start": "2026-01-01T00:00:00.000Z",
                   "window_end": "2026-02-01T00:00:00.000Z",
                   "recommended_thresholds": {"0.2": 0.1, "0.4": 0.3, "0.6": 0.5, "0.8": 0.7}}
    storage = AssetStorage(base_uri=str(server.settings.home / "assets"), home=str(server.settings.home))
    storage.write("confidence_calibration_custom", "2026-01-01..2026-02-01", calibration)
    proposed = _cli(server, principals, "alice", "propose", "--calibration", "cccccccc", "--json")
    assert proposed.returncode == 0, proposed.stderr
    pid = json.loads(proposed.stdout)["id"]
    assert server.client.post("/learning/kill-switch/disable", json={"reason": "incident"},
                              headers=auth("admin-token")).status_code == 200
    blocked = _approve(server, pid, "erin-token")
    assert blocked.status_code == 503 and blocked.json()["error"] == "KILL_SWITCH_ACTIVE"
    record = server.audit(blocked.json()["auditId"])
    assert (record["operation_type"], record["status"], record["results"]["skip_reason"]) == (
        "THRESHOLD_APPROVAL", "SKIPPED", "KILL_SWITCH_ACTIVE")
    from_cli = _cli(server, principals, "erin", "approve", pid)
    assert from_cli.returncode == 1 and "KILL_SWITCH_ACTIVE" in from_cli.stderr
    assert server.client.get("/learning/thresholds", headers=auth("erin-token")).status_code == 404

    assert server.client.post("/learning/kill-switch/enable", headers=auth("admin-token")).status_code == 200
    approved = _cli(server, principals, "erin", "approve", pid, "--json")
    assert approved.returncode == 0, approved.stderr
    assert json.loads(approved.stdout)["current"]["thresholds"] == calibration["recommended_thresholds"]
    assert server.client.get("/learning/thresholds", headers=auth("erin-token")).json()["version"] == 1

    missing = _cli(server, principals, "alice", "propose", "--month", "2025-13")
    assert missing.returncode == 2 and "month: '2025-13' is not a month YYYY-MM" in missing.stderr
    uncalibrated = _cli(server, principals, "alice", "propose", "--month", "2025-06")
    assert uncalibrated.returncode == 2 and "trigger calibrate --start 2025-06-01 --end 2025-07-01" in uncalibrated.stderr
