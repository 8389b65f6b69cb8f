"""Runs submitted to the instance's run coordinator, for an instance that queues them (QueuedRunCoordinator).

On such an instance a manual run is not executed by the process that asks for it: the
run is created from the code location's named job, submitted (`PIPELINE_ENQUEUED`), and
the daemon dequeues it within the queue's limits and starts it through the run launcher,
in a run worker (a subprocess of the code server, an ECS task, a pod). The asking
process follows the run by polling its status and reads its result from the event log.

The run is created and submitted by Dagster's own `dagster job launch` (its public
CLI), in a subprocess on the same instance (`DAGSTER_HOME`), which loads the code
location `opx_learning.definitions` from this Python environment (no webserver or
long-running code server is needed to submit); the run names the location
`OPX_DAGSTER_LOCATION` (default `opx_learning.definitions`, the name both shipped
workspaces give it), so the daemon launches it on the code server of that name.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import dagster as dg

DEFAULT_LOCATION = "opx_learning.definitions"
REPOSITORY = "__repository__"
TRIGGER_TYPE_TAG = "opx/trigger_type"
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
PARTITION = "dagster/partition"
FOLLOW_TIMEOUT = 3600.0
POLL_EVERY = 1.0
MODULE = "opx_learning.definitions"
SUBMIT_TIMEOUT = 300.0
_ERROR_CHARS = 2000


def queues(instance: dg.DagsterInstance, launch: str = "in-process") -> bool:
    """Whether manual runs are submitted through the code location rather than run in this process.

    Always with `launch="location"`; else on a queued coordinator (the local one only while a
    daemon dequeues).
    """
    import dagster as dg

    from opx_learning.app.coordinator import LocalRunCoordinator, daemon_dequeues

    if launch == "location":
        return True
    coordinator = instance.run_coordinator
    if isinstance(coordinator, LocalRunCoordinator):
        return daemon_dequeues(instance)
    return isinstance(coordinator, dg.QueuedRunCoordinator)


def partition_tags(partitions: Sequence[str]) -> dict[str, str]:
    """`dagster/partition` for one partition, the range tags for several (one run over the range)."""
    if len(partitions) == 1:
        return {PARTITION: partitions[0]}
    if partitions:
        return {RANGE_START: partitions[0], RANGE_END: partitions[-1]}
    return {}


def _workspace_yaml(location_name: str) -> str:
    """A workspace of the one code location, under the name submitted runs carry, loaded as this process loads it."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the `opx_learning` this process imports
    location = {"module_name": MODULE, "location_name": location_name, "working_directory": os.path.dirname(package)}
    return json.dumps({"load_from": [{"python_module": location}]})  # JSON is YAML


def submit_job(
    instance: dg.DagsterInstance,
    job_name: str,
    partitions: Sequence[str],
    tags: Mapping[str, str],
    *,
    run_id: str | None = None,
    location: str = DEFAULT_LOCATION,
) -> str:
    """Create a run of the named job over `partitions` and submit it to the instance's run coordinator.

    Dagster's `dagster job launch` creates the run (the job's tags, then the partition tags,
    then `tags`) with its execution plan and submits it, in a subprocess on the instance of
    `DAGSTER_HOME` (the caller's instance, `app.instance.ensure_dagster_home`).

    Args:
        instance: the instance (a queued coordinator enqueues the run; the default one launches it).
        job_name: a job of the code location (`defs.jobs.job_for_assets`).
        partitions: one partition key, or the first..last keys of one range (one run).
        tags: run tags (the adoption tags, `opx/trigger_type`, ...).
        run_id: the run's id (default: a new one).
        location: the code location name the run carries (the settings' `dagster_location`).

    Returns:
        The run id.

    Raises:
        RuntimeError: the run was not submitted (with Dagster's error).
    """
    from opx_learning.app.coordinator import SUBMITTED_BY_TAG

    run_id = run_id or str(uuid.uuid4())
    with tempfile.TemporaryDirectory(prefix="opx-submit-") as folder:
        workspace = os.path.join(folder, "workspace.yaml")
        with open(workspace, "w", encoding="utf-8") as handle:
            handle.write(_workspace_yaml(location))
        command = [
            sys.executable, "-m", "dagster", "job", "launch",
            "-w", workspace, "-l", location, "-r", REPOSITORY, "-j", job_name,
            "--tags", json.dumps({**partition_tags(partitions), **tags, SUBMITTED_BY_TAG: "opx-learning"}),
            "--run-id", run_id,
        ]  # fmt: skip
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=SUBMIT_TIMEOUT, check=False, stdin=subprocess.DEVNULL
        )
    if done.returncode != 0 or instance.get_run_by_id(run_id) is None:
        error = (done.stderr or done.stdout or "").strip()[-_ERROR_CHARS:]
        raise RuntimeError(f"`dagster job launch` did not submit run {run_id} of {job_name} (exit {done.returncode}): {error}")
    return run_id


def follow(
    instance: dg.DagsterInstance,
    run_id: str,
    *,
    timeout: float = FOLLOW_TIMEOUT,
    progress: Callable[[str], None] | None = None,
    poll_every: float = POLL_EVERY,
) -> dg.DagsterRun | None:
    """Poll the run until it is finished; None if it is still going after `timeout` seconds.

    `progress` gets one line per status change (`QUEUED`, `STARTING`, `STARTED`, ...); a run
    the daemon dequeued before the first poll is reported QUEUED first all the same.
    """
    import dagster as dg

    started = time.monotonic()
    last = None
    while True:
        run = instance.get_run_by_id(run_id)
        if run is None:
            raise LookupError(f"run {run_id} is not in the instance")
        elapsed = time.monotonic() - started
        if last is None and run.status not in (dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED):
            enqueued = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.PIPELINE_ENQUEUED, limit=1)
            if enqueued.records and progress is not None:
                progress(f"   run {run_id} {dg.DagsterRunStatus.QUEUED.value} ({elapsed:.1f} s)")
        if run.status != last and progress is not None:
            progress(f"   run {run_id} {run.status.value} ({elapsed:.1f} s)")
        last = run.status
        if run.is_finished:
            return run
        if elapsed > timeout:
            return None
        time.sleep(poll_every)


class StoredRun:
    """A finished run read back from the instance, with the attributes `app.launch.summarize` reads."""

    def __init__(self, instance: dg.DagsterInstance, run: dg.DagsterRun) -> None:
        import dagster as dg

        self.run_id = run.run_id
        self.success = run.status == dg.DagsterRunStatus.SUCCESS
        self.all_events = [
            entry.dagster_event for entry in instance.all_logs(run.run_id) if entry.dagster_event is not None
        ]

    def get_asset_check_evaluations(self) -> list[dg.AssetCheckEvaluation]:
        """The check evaluations of the run."""
        return [
            event.event_specific_data
            for event in self.all_events
            if event.event_type_value == "ASSET_CHECK_EVALUATION"
        ]

    def run_failure(self) -> str | None:
        """The run's own failure message (e.g. a launch failure), when it failed."""
        for event in self.all_events:
            if event.event_type_value == "PIPELINE_FAILURE":
                return event.message
        return None
