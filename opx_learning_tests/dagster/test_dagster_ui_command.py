"""`opx-learning ui` serves the Dagster UI on the instance the CLI used, and the trigger links follow OPX_UI_URL."""

from __future__ import annotations

import contextlib
import json
import os
import signal
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
RUNS = "query { runsOrError { ... on Runs { results { runId jobName repositoryOrigin { repositoryLocationName } } } } }"


def test_ui_shows_the_instance_the_cli_used(instance: dg.DagsterInstance, seeded: pl.DataFrame, tmp_path: Path) -> None:
    run = launch.materialize(settings(), instance, ["daily_outcomes", "pattern_summaries_daily"], ["2025-10-01"])
    assert run.success, run.failures
    days = [f"2025-10-{day:02d}" for day in range(2, 32)] + [f"2025-11-{day:02d}" for day in range(1, 30)]
    ranged = launch.materialize(settings(), instance, ["daily_outcomes", "pattern_summaries_daily"], days)
    assert ranged.success, ranged.failures
    # The same operation through the code location (no daemon alive): the run carries its origin.
    env = {**os.environ, "OPX_LAUNCH": "location", "OPX_PRINCIPAL": "alice"}
    done = subprocess.run([str(OPX), "trigger", "extract-patterns", "--start", "2025-11-30", "--end", "2025-12-01",
                           "--json"], env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    located = json.loads(done.stdout[done.stdout.index("{"):])
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
        origins = {(r["runId"], r["jobName"]): (r["repositoryOrigin"] or {}).get("repositoryLocationName") for r in runs}
        # In process: no origin (the UI's timeline cannot place it); through the location: its location.
        assert origins == {(run.run_id, "daily_patterns_job"): None, (ranged.run_id, "daily_patterns_job"): None,
                           (located["run"]["run_id"], "daily_patterns_job"): "opx_learning.definitions"}
        job_runs = graphql(url, JOB_RUNS, {"job": "daily_patterns_job"})["runsOrError"]["results"]
        assert located["run"]["run_id"] in {r["runId"] for r in job_runs}
        # The asset's Events tab, paged as the UI pages it and keyed as it de-duplicates (run, ms, kind):
        # every partition of the 59-day range run is its own row.
        listed = _events_as_the_ui_lists_them(url, "pattern_summaries_daily")
        assert sorted(partition for run_id, partition in listed if run_id == ranged.run_id) == sorted(days)
        assert [partition for run_id, partition in listed if run_id == run.run_id] == ["2025-10-01"]
        # SIGTERM to the command alone (as a service manager sends it): within 10 s it is gone, children included.
        children = _descendants(process.pid)
        assert len(children) >= 3, children  # dagster dev, its webserver and daemon (and code servers)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
        assert process.returncode == 0
        time.sleep(0.2)
        assert not [pid for pid in children if _alive(pid)], log.read_text()
    finally:
        stop(process)
        for pid in _descendants(process.pid) if process.poll() is None else []:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert f"DAGSTER_HOME={os.environ['DAGSTER_HOME']}" in log.read_text()


JOB_RUNS = """
query($job: String!) {
  runsOrError(filter: {pipelineName: $job}) { ... on Runs { results { runId } } }
}"""
EVENTS = """
query($assetKey: AssetKeyInput!, $limit: Int!, $cursor: String) {
  assetOrError(assetKey: $assetKey) {
    ... on Asset {
      assetEventHistory(limit: $limit, cursor: $cursor, eventTypeSelectors: [MATERIALIZATION, OBSERVATION]) {
        results { __typename ... on MaterializationEvent { runId timestamp partition } }
        cursor
      }
    }
  }
}"""


def _events_as_the_ui_lists_them(url: str, asset: str) -> list[tuple[str, str]]:
    """(run id, partition) of each materialization row the Events tab shows: pages of 100, unique by run + ms + kind."""
    rows: dict[str, tuple[str, str]] = {}
    cursor = None
    while True:
        page = graphql(url, EVENTS, {"assetKey": {"path": [asset]}, "limit": 100, "cursor": cursor})
        history = page["assetOrError"]["assetEventHistory"]
        for event in history["results"]:
            if event["__typename"] == "MaterializationEvent":
                rows.setdefault(f"{event['runId']}{event['timestamp']}.{event['__typename']}", (event["runId"], event["partition"]))
        if not history["results"] or not history["cursor"] or history["cursor"] == cursor:
            return list(rows.values())
        cursor = history["cursor"]


def _descendants(root: int) -> list[int]:
    """Every live process below `root`, whatever its process group or session."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError):
            text = stat.read_text()
            parents[int(stat.parent.name)] = int(text[text.rindex(")") + 2 :].split()[1])
    found, frontier = [], [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        found.extend(children)
        frontier.extend(children)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rindex(")") + 2] != "Z"


def test_trigger_links_follow_opx_ui_url(dagster_home: Path, seeded: pl.DataFrame) -> None:
    env = {**os.environ, "OPX_UI_URL": "https://dagster.example.internal/"}
    result = subprocess.run(
        [str(OPX), "trigger", "extract-patterns", "--start", "2025-10-01", "--end", "2025-10-02", "--json"],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    output = json.loads(result.stdout[result.stdout.index("{"):])
    assert output["where"]["run"] == f"https://dagster.example.internal/runs/{output['run']['run_id']}"
