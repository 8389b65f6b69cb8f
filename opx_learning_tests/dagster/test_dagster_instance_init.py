"""Parallel CLI launches on a fresh DAGSTER_HOME: the instance's storage is created once, never raced."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

PROCESSES = 6
# What every `opx-learning trigger` does before its run: prepare the home, then open the instance.
SCRIPT = """
import sys, time
from opx_learning.app.instance import ensure_dagster_home
from opx_learning.config import Settings
import dagster as dg
deadline = float(sys.argv[1])
while time.time() < deadline:
    time.sleep(0.001)
ensure_dagster_home(Settings.from_env())
with dg.DagsterInstance.get() as instance:
    print("runs", len(instance.get_runs(limit=1)))
"""


def test_simultaneous_first_launches_share_one_initialised_instance(tmp_path: Path) -> None:
    home = tmp_path / "dagster_home"
    env = {**os.environ, "DAGSTER_HOME": str(home), "OPX_HOME": str(tmp_path / "opx"), "OPX_BACKEND": "local"}
    start_at = time.time() + 8  # after every interpreter has imported dagster
    processes = [
        subprocess.Popen([sys.executable, "-c", SCRIPT, str(start_at)], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
        for _ in range(PROCESSES)
    ]
    try:
        results = [process.communicate(timeout=120) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
    for process, (out, err) in zip(processes, results, strict=True):
        assert process.returncode == 0, err
        assert out.strip() == "runs 0" and "already exists" not in err
    assert (home / "dagster.yaml").read_text().startswith("# Local Dagster instance settings")
