"""`opx-learning ui` serves the Dagster UI on the instance the CLI used, and the trigger links follow OPX_UI_URL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg
import polars as pl

from opx_learning.app import launch
from opx_learning_tests.conftest import _free_port
from opx_learning_tests.graphql import graphql
from opx_learning_tests.processes import spawn, stop
from opx_learning_tests.wiring import settings

OPX = Path(sys.executable).with_name("opx-learning")
RUNS = "query { runsOrError { ... on Runs { results { runId jobName } } } }"


def test_ui_shows_the_instance_the_cli_used(instance: dg.DagsterInstance, seeded: pl.DataFrame, tmp_path: Path) -> None:
    run = launch.materialize(settings(), instance, ["daily_outcomes", "pattern_summaries_daily"], ["2025-10-01"])
    assert run.success, run.failures
    port = _free_port()
    log = tmp_path / "ui.log"
    with open(log, "wb") as out:
        # From another directory: the code location is loaded as a module, not through workspace.yaml.
        process = spawn([str(OPX), "ui", "--port", str(port)], cwd=tmp_path, env=dict(os.environ),
                        stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/server_info", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        runs = graphql(url, RUNS)["runsOrError"]["results"]
        assert {(r["runId"], r["jobName"]) for r in runs} == {(run.run_id, "daily_patterns_job")}
    finally:
        stop(process)
    assert f"DAGSTER_HOME={os.environ['DAGSTER_HOME']}" in log.read_text()


def test_trigger_links_follow_opx_ui_url(dagster_home: Path, seeded: pl.DataFrame) -> None:
    env = {**os.environ, "OPX_UI_URL": "https://dagster.example.internal/"}
    result = subprocess.run(
        [str(OPX), "trigger", "extract-patterns", "--start", "2025-10-01", "--end", "2025-10-02", "--json"],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    output = json.loads(result.stdout[result.stdout.index("{"):])
    assert output["where"]["run"] == f"https://dagster.example.internal/runs/{output['run']['run_id']}"
