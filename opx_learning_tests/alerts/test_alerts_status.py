"""`opx-learning status`: the six dashboard rows from crafted audit records."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from click.testing import CliRunner

from opx_learning.backends import guard_for
from opx_learning.cli.main import cli
from opx_learning.config import get_settings
from opx_learning.safety.audit import utcnow
from opx_learning_tests.alerts.conftest import record


def test_status_rows_from_the_audit_trail(opx_home: Path) -> None:
    now = utcnow()
    audit = guard_for(get_settings()).audit

    def add(*args, **kwargs):
        stored = record(*args, now=now, **kwargs)
        audit.append(stored)
        return stored

    # Pattern extraction in the last 24 h: 8 SUCCESS (60 s each), 2 FAILED (30 s) -> 20 % error rate.
    for i in range(8):
        add("PATTERN_EXTRACTION", "SUCCESS", started=timedelta(hours=1, minutes=i), duration=timedelta(seconds=60))
    for i in range(2):
        add("PATTERN_EXTRACTION", "FAILED", started=timedelta(hours=2, minutes=i), trigger="MANUAL",
            duration=timedelta(seconds=30))
    # Snapshots: 1 SUCCESS of 6 min (flagged), 1 SKIPPED by the kill switch, 1 outside the window.
    add("SNAPSHOT", "SUCCESS", started=timedelta(hours=3), trigger="BACKFILL", duration=timedelta(minutes=6))
    add("SNAPSHOT", "SKIPPED", started=timedelta(hours=4), duration=timedelta(0), results={"skip_reason": "KILL_SWITCH_ACTIVE"})
    add("SNAPSHOT", "FAILED", started=timedelta(hours=30))
    # Calibrations (drift row ignores the window): one drifted, one fine.
    add("CALIBRATION", "SUCCESS", started=timedelta(days=40),
        results={"drift": -0.05, "max_abs_drift": 0.05, "outcome_count": 300, "skipped_count": 4})
    add("CALIBRATION", "SUCCESS", started=timedelta(days=10),
        results={"drift": -0.2, "max_abs_drift": 0.2, "outcome_count": 280, "skipped_count": 6})

    result = CliRunner().invoke(cli, ["status", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["counts"]["PATTERN_EXTRACTION"] == {"RUNNING": 0, "SUCCESS": 8, "FAILED": 2, "SKIPPED": 0}
    assert report["counts"]["SNAPSHOT"] == {"RUNNING": 0, "SUCCESS": 1, "FAILED": 0, "SKIPPED": 1}
    assert report["error_rates"]["PATTERN_EXTRACTION"] == {"failed": 2, "finished": 10, "error_rate": 0.2, "flag": True}
    assert report["error_rates"]["SNAPSHOT"]["error_rate"] == 0.0 and not report["error_rates"]["SNAPSHOT"]["flag"]
    assert report["error_rates"]["CALIBRATION"]["error_rate"] is None
    # avg = (8*60 + 2*30) / 10 = 54 s; p99 over [30,30,60*8]: position 9*0.99 = 8.91 between 60 and 60 -> 60 s.
    assert report["durations"]["PATTERN_EXTRACTION"] == {
        "count": 10, "avg_ms": 54000.0, "p99_ms": 60000.0, "max_ms": 60000.0, "flag": False
    }
    assert report["durations"]["SNAPSHOT"]["max_ms"] == 360000.0 and report["durations"]["SNAPSHOT"]["flag"]
    assert report["triggers"]["SCHEDULED"] == {"PATTERN_EXTRACTION": 8, "CALIBRATION": 0, "SNAPSHOT": 1}
    assert report["triggers"]["MANUAL"]["PATTERN_EXTRACTION"] == 2 and report["triggers"]["BACKFILL"]["SNAPSHOT"] == 1
    assert [(d["drift"], d["flag"], d["outcome_count"], d["skipped_count"]) for d in report["drift"]] == [
        (-0.05, False, 300, 4), (-0.2, True, 280, 6)
    ]
    assert len(report["recent"]) == 15 and report["recent"][0]["operation_type"] == "PATTERN_EXTRACTION"
    assert report["recent"][0]["start_time"] > report["recent"][-1]["start_time"]

    human = CliRunner().invoke(cli, ["status", "--hours", "24"])
    assert human.exit_code == 0, human.output
    text = human.output
    for heading in ("1. Success / failure counts", "2. Error rates", "3. Durations", "4. Trigger types",
                    "5. Calibration drift", "6. Last 20 operations"):
        assert heading in text
    assert "20.0%  (2/10)  ! over 10 %" in text and "! over 5 min" in text and "! |drift| > 0.15" in text
    assert "KILL_SWITCH_ACTIVE" in text


def test_status_rejects_a_bad_window(opx_home: Path) -> None:
    result = CliRunner().invoke(cli, ["status", "--hours", "0"])
    assert result.exit_code == 2 and "--hours" in result.output
