"""An unusable home over HTTP: 503 with the reason and the path, never a 500 or a traceback."""

from __future__ import annotations

import json
from collections.abc import Callable

from opx_learning_tests.api.conftest import Server, auth
from opx_learning_tests.permissions import mode, restricted

JANUARY = {"startDate": "2026-01-01", "endDate": "2026-02-01"}


def test_unreadable_home_answers_503_with_the_reason(server_factory: Callable[..., Server]) -> None:
    server = server_factory(prefix=restricted())
    home = server.settings.home
    with mode(home, 0o000):
        status = server.client.get("/learning/kill-switch/status")
        trigger = server.client.post("/learning/calibrate", json=JANUARY, headers=auth("alice-token"))
        audit = server.client.get("/learning/audit/CALIBRATION%23x", headers=auth("alice-token"))
        thresholds = server.client.get("/learning/thresholds", headers=auth("alice-token"))
    assert (status.status_code, status.json()["error"]) == (503, "KILL_SWITCH_UNAVAILABLE")
    assert f"Permission denied: '{home}/" in status.json()["message"]
    assert (trigger.status_code, trigger.json()["error"]) == (503, "KILL_SWITCH_UNAVAILABLE")
    assert "CALIBRATION MANUAL not run (fail closed)" in trigger.json()["message"]
    assert "auditId" not in trigger.json()  # the refusal could not be audited: no id is claimed
    assert (audit.status_code, audit.json()["error"]) == (503, "STATE_UNAVAILABLE")
    assert (thresholds.status_code, thresholds.json()["error"]) == (503, "STATE_UNAVAILABLE")
    assert f"{home}/state.db" in audit.json()["message"]

    # Readable again: the state was never touched.
    assert server.client.get("/learning/kill-switch/status").json()["enabled"] is True
    assert "Traceback" not in server.log.read_text()


def test_unreadable_outcome_partition_answers_503_home_unavailable(server_factory: Callable[..., Server]) -> None:
    server = server_factory(prefix=restricted())
    partition = server.settings.home / "outcomes" / "recorded_date=2026-01-10"
    assert partition.is_dir()
    body = {**JANUARY, "service": "order-service"}
    with mode(partition, 0o000):
        # The service check reads the window's outcomes before any rate-limit slot or audit record.
        response = server.client.post("/learning/extract-patterns", json=body, headers=auth("alice-token"))
    assert response.status_code == 503, response.text
    error = response.json()
    assert error["error"] == "HOME_UNAVAILABLE" and error["message"].startswith(f"HOME_UNAVAILABLE: {partition}/")
    assert "Permission denied" in error["message"]
    alerts = [json.loads(line) for line in (server.settings.home / "alerts.jsonl").read_text().splitlines()]
    assert [(a["severity"], a["alarm"]) for a in alerts] == [("P1", "HOME_UNAVAILABLE")]
    assert alerts[0]["details"]["path"].startswith(f"{partition}/")
    assert "Traceback" not in server.log.read_text()
