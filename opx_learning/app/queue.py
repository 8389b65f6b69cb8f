"""Runs submitted to the instance's run coordinator, for an instance that queues them (QueuedRunCoordinator).

On such an instance a manual run is not executed by the process that asks for it: the
run is created from the code location's named job, submitted (`PIPELINE_ENQUEUED`), and
the daemon dequeues it within the queue's limits and starts it through the run launcher,
in a run worker (a subprocess of the code server, an ECS task, a pod). The asking
process follows the run by polling its status and reads its result from the event log.

The job is taken from the code location loaded in this process (no code server or
webserver is needed to submit); the run names the location `OPX_DAGSTER_LOCATION`
(default `opx_learning.definitions`, the name both shipped workspaces give it), so the
daemon launches it on the code server of that name.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import dagster as dg

LOCATION_ENV = "OPX_DAGSTER_LOCATION"
DEFAULT_LOCATION = "opx_learning.definitions"
REPOSITORY = "__repository__"
TRIGGER_TYPE_TAG = "opx/trigger_type"
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
PARTITION = "dagster/partition"
FOLLOW_TIMEOUT = 3600.0
POLL_EVERY = 1.0


def queues(instance: dg.DagsterInstance) -> bool:
    """Whether manual runs go through the instance's queue: a queued coordinator (the local one only while a daemon dequeues)."""
    import dagster as dg

    from opx_learning.app.coordinator import LocalRunCoordinator, daemon_dequeues

    coordinator = instance.run_coordinator
    if isinstance(coordinator, LocalRunCoordinator):
        return daemon_dequeues(instance)
    return isinstance(coordinator, dg.QueuedRunCoordinator)


def location_name() -> str:
    """The code location name submitted runs carry (`OPX_DAGSTER_LOCATION`, default `opx_learning.definitions`)."""
    return os.environ.get(LOCATION_ENV, "").strip() or DEFAULT_LOCATION


def partition_tags(partitions: Sequence[str]) -> dict[str, str]:
    """`dagster/partition` for one partition, the range tags for several (one run over the range)."""
    if len(partitions) == 1:
        return {PARTITION: partitions[0]}
    if partitions:
        return {RANGE_START: partitions[0], RANGE_END: partitions[-1]}
    return {}


@contextmanager
def _workspace(instance: dg.DagsterInstance) -> Iterator[Any]:
    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget

    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(executable_path=sys.executable, module_name="opx_learning.definitions"),
        location_name=location_name(),
    )
    with WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget(origin)) as context:
        yield context.create_request_context()


def submit_job(
    instance: dg.DagsterInstance,
    job_name: str,
    partitions: Sequence[str],
    tags: Mapping[str, str],
    *,
    run_id: str | None = None,
) -> str:
    """Create a run of the named job over `partitions` and submit it to the instance's run coordinator.

    Args:
        instance: the instance (a queued coordinator enqueues the run; the default one launches it).
        job_name: a job of the code location (`defs.jobs.job_for_assets`).
        partitions: one partition key, or the first..last keys of one range (one run).
        tags: run tags (the adoption tags, `opx/trigger_type`, ...).
        run_id: the run's id (default: a new one).

    Returns:
        The run id.
    """
    with _workspace(instance) as workspace:
        code_location = workspace.get_code_location(location_name())
        repository = code_location.get_repository(REPOSITORY)
        remote_job = repository.get_full_job(job_name)
        plan = code_location.get_execution_plan(
            remote_job, {}, step_keys_to_execute=None, known_state=None, instance=instance
        ).execution_plan_snapshot
        run = instance.create_run(
            job_name=job_name,
            run_id=run_id,
            run_config={},
            resolved_op_selection=None,
            step_keys_to_execute=plan.step_keys_to_execute,
            op_selection=None,
            status=None,
            root_run_id=None,
            parent_run_id=None,
            tags={**remote_job.tags, **partition_tags(partitions), **tags},
            job_snapshot=remote_job.job_snapshot,
            execution_plan_snapshot=plan,
            parent_job_snapshot=remote_job.parent_job_snapshot,
            remote_job_origin=remote_job.get_remote_origin(),
            job_code_origin=remote_job.get_python_origin(),
            asset_selection=None,
            asset_check_selection=None,
            asset_graph=repository.asset_graph,
        )
        instance.submit_run(run.run_id, workspace)
    return run.run_id


def follow(
    instance: dg.DagsterInstance,
    run_id: str,
    *,
    timeout: float = FOLLOW_TIMEOUT,
    progress: Callable[[str], None] | None = None,
    poll_every: float = POLL_EVERY,
) -> dg.DagsterRun | None:
    """Poll the run until it is finished; None if it is still going after `timeout` seconds.

    `progress` gets one line per status change (`QUEUED`, `STARTING`, `STARTED`, ...).
    """
    started = time.monotonic()
    last = None
    while True:
        run = instance.get_run_by_id(run_id)
        if run is None:
            raise LookupError(f"run {run_id} is not in the instance")
        elapsed = time.monotonic() - started
        if run.status != last and progress is not None:
            progress(f"   run {run_id} {run.status.value} ({elapsed:.1f} s)")
        last = run.status
        if run.is_finished:
            return run
        if elapsed > timeout:
            return None
        time.sleep(poll_every)


class StoredRun:
    """A finished run read back from the instance, with the attributes `defs.launch.summarize` reads."""

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
