"""A trigger killed with SIGKILL leaves nothing RUNNING once the next command looks, with no daemon running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import polars as pl

from opx_learning.backends import guard_for
from opx_learning.safety.models import AuditStatus
from opx_learning_tests import wiring
from opx_learning_tests.processes import spawn, stop

OPX = Path(sys.executable).with_name("opx-learning")


def test_a_killed_trigger_is_closed_by_the_next_status(
    instance: dg.DagsterInstance, seeded: pl.DataFrame, opx_home: Path, tmp_path: Path
) -> None:
    env = {**os.environ, "OPX_RATE_LIMITS": "PATTERN_EXTRACTION=100"}
    with open(tmp_path / "trigger.log", "wb") as out:
        process = spawn([str(OPX), "trigger", "extract-patterns", "--start", "2025-09-01", "--end", "2025-11-30"],
                        env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        started = []
        while not started:
            started = instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]), limit=1)
            assert process.poll() is None, (tmp_path / "trigger.log").read_text()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    finally:
        stop(process)
    run_id = started[0].dagster_run.run_id
    guard = guard_for(wiring.settings())
    [record] = guard.audit.query(status=AuditStatus.RUNNING)
    assert instance.get_run_by_id(run_id).status is dg.DagsterRunStatus.STARTED

    result = subprocess.run([str(OPX), "status", "--json"], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert f"closed {record.audit_id} FAILED (RUN_TERMINATED)" in result.stderr
    assert guard.audit.query(status=AuditStatus.RUNNING) == []
    closed = guard.audit.get(record.audit_id)
    assert closed.status is AuditStatus.FAILED and closed.results["failure_reason"] == "RUN_TERMINATED"
    instance = dg.DagsterInstance.get()  # what the UI would read now
    assert instance.get_run_by_id(run_id).status is dg.DagsterRunStatus.FAILURE
    alerts = [json.loads(line) for line in (opx_home / "alerts.jsonl").read_text().splitlines()]
    assert [(a["severity"], a["alarm"]) for a in alerts if a["audit_id"] == record.audit_id] == [("P2", "OPERATION_FAILURE")]
