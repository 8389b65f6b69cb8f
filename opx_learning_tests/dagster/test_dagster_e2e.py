"""`dagster dev` (webserver + daemon) on a free loopback port runs a date-range backfill launched via GraphQL."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest
from dagster._core.events import DagsterEventType

from opx_learning.app.coordinator import daemon_dequeues
from opx_learning.safety.models import AuthorityType, Principal
from opx_learning_tests.graphql import BACKFILL_RUNS, LAUNCH_BACKFILL, graphql
from opx_learning_tests.processes import spawn, stop
from opx_learning_tests.wiring import resource

ROOT = Path(__file__).resolve().parents[2]
DAGSTER = Path(sys.executable).with_name("dagster")
OPX = Path(sys.executable).with_name("opx-learning")
MATERIALIZATIONS = """
query($key: AssetKeyInput!) {
  assetOrError(assetKey: $key) {
    ... on Asset { assetMaterializations(limit: 100) { partition runId } }
  }
}"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A `dagster dev` process and its GraphQL endpoint."""

    def __init__(self, url: str) -> None:
        self.url = url

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """POST a GraphQL document; fail on GraphQL errors."""
        return graphql(self.url, query, variables)


def _wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except OSError:
            value = None
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def server(dagster_home: Path) -> Iterator[Server]:
    port = _free_port()
    log = open(dagster_home / "dagster-dev.log", "w")  # noqa: SIM115 - closed below
    process = spawn(
        [str(DAGSTER), "dev", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=dict(os.environ),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: urllib.request.urlopen(f"{url}/server_info", timeout=2).status == 200, 60, "the webserver")
        yield Server(url)
    finally:
        stop(process)
        log.close()


def test_dagster_dev_backfill_over_a_date_range(server: Server, seeded: pl.DataFrame) -> None:
    assets = ("daily_outcomes", "pattern_summaries_daily")
    params = {
        "partitionsByAssets": [
            {"assetKey": {"path": [name]}, "partitions": {"range": {"start": "2025-10-01", "end": "2025-10-31"}}}
            for name in assets
        ],
        "tags": [{"key": "opx/principal", "value": "alice"}],
        "title": "October backfill",
    }
    launched = server.graphql(LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill_id = launched["backfillId"]

    def finished_runs() -> list[dict[str, Any]] | None:
        backfill = server.graphql(BACKFILL_RUNS, {"id": backfill_id})["partitionBackfillOrError"]
        runs = backfill["runs"]
        done = runs and all(run["status"] in ("SUCCESS", "FAILURE", "CANCELED") for run in runs)
        return runs if done else None

    runs = _wait(finished_runs, 150, "the backfill's runs")
    assert [run["status"] for run in runs] == ["SUCCESS"]  # single-run backfill: one run for 31 days

    for name in assets:
        found = server.graphql(MATERIALIZATIONS, {"key": {"path": [name]}})["assetOrError"]["assetMaterializations"]
        assert sorted(m["partition"] for m in found) == [f"2025-10-{day:02d}" for day in range(1, 32)]
        assert {m["runId"] for m in found} == {runs[0]["runId"]}

    (record,) = [r for r in resource("safety").guard().audit.recent(10) if r.run_id == runs[0]["runId"]]
    assert (record.operation_type.value, record.trigger_type.value, record.status.value) == (
        "PATTERN_EXTRACTION",
        "BACKFILL",
        "SUCCESS",
    )
    # A UI/GraphQL launch is `dagster-ui`: its `opx/principal` tag names nobody.
    assert (record.triggered_by.principal, record.triggered_by.authority.value) == ("dagster-ui", "HUMAN_OPERATOR")
    assert record.results["partitions_stored"] == [f"2025-10-{day:02d}" for day in range(1, 32)]
    assert record.parameters["start_date"] == "2025-10-01T00:00:00.000Z"
    assert record.parameters["end_date"] == "2025-11-01T00:00:00.000Z"


QUEUE_SUPPORT = "{ instance { runQueuingSupported runLauncher { name } } }"
BACKFILL_STATUS = """
query($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    ... on PartitionBackfill { status error { message } runs { runId status tags { key value } } }
  }
}"""


def test_dagster_dev_queues_ui_runs_and_cli_triggers_and_shows_why_a_backfill_was_skipped(
    server: Server, seeded: pl.DataFrame
) -> None:
    # The local instance queues (no "default run launcher without a queued run coordinator" banner).
    assert server.graphql(QUEUE_SUPPORT)["instance"]["runQueuingSupported"] is True

    # While `dagster dev`'s daemon is alive, a CLI trigger goes through its queue and is followed to the end.
    with dg.DagsterInstance.get() as instance:
        _wait(lambda: daemon_dequeues(instance), 90, "the daemon's run queue heartbeat")
        done = subprocess.run(
            [str(OPX), "trigger", "extract-patterns", "--start", "2025-10-05", "--end", "2025-10-06"],
            capture_output=True, text=True, timeout=300, check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        run = instance.get_runs(limit=1)[0]
        enqueued = instance.get_records_for_run(run.run_id, of_type=DagsterEventType.PIPELINE_ENQUEUED).records
        assert run.status.value == "SUCCESS" and enqueued, run

    # A Catalog backfill under an active kill switch: its page says why nothing was stored.
    resource("safety").guard().kill_switch.disable(Principal("ops-admin", AuthorityType.EMERGENCY_OVERRIDE), "incident 7")
    params = {
        "partitionsByAssets": [
            {"assetKey": {"path": ["pattern_summaries_daily"]}, "partitions": {"range": {"start": "2025-10-10", "end": "2025-10-11"}}}
        ],
        "title": "under the kill switch",
    }
    launched = server.graphql(LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched

    def finished() -> dict[str, Any] | None:
        backfill = server.graphql(BACKFILL_STATUS, {"id": launched["backfillId"]})["partitionBackfillOrError"]
        return backfill if backfill["status"] not in ("REQUESTED", "CANCELING") else None

    backfill = _wait(finished, 150, "the backfill to finish")
    (run,) = backfill["runs"]
    assert run["status"] == "SUCCESS"
    assert {"key": "opx/skipped", "value": "KILL_SWITCH_ACTIVE"} in run["tags"]
    assert any(tag["key"] == "opx/skip_message" and "incident 7" in tag["value"] for tag in run["tags"]), run["tags"]
    # Each partition's observation says what was skipped, by which run of which backfill, and why.
    with dg.DagsterInstance.get() as instance:
        for day in ("2025-10-10", "2025-10-11"):
            (record,) = instance.fetch_observations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey("pattern_summaries_daily"), asset_partitions=[day]), limit=5
            ).records
            note = record.asset_observation.metadata["note"].value
            assert note.startswith("KILL_SWITCH_ACTIVE: pattern_summaries_daily 2025-10-10..2025-10-11 was SKIPPED, not failed")
            assert f"run {run['runId']} of backfill {launched['backfillId']}" in note and "incident 7" in note
    # The backfill is Dagster's own: nothing of the skip is written on it.
    assert "SKIPPED" not in ((backfill["error"] or {}).get("message") or "")
