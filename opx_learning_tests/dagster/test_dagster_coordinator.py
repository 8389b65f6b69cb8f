"""The local instance queues like Dagster's QueuedRunCoordinator; opx-learning's commands use the queue only while a daemon dequeues."""

from __future__ import annotations

import time

import dagster as dg
import pytest
from dagster._daemon.types import DaemonHeartbeat

from opx_learning.app.coordinator import LocalRunCoordinator, daemon_dequeues
from opx_learning.app.queue import queues, submit_job
from opx_learning.config import Settings


def _beat(instance: dg.DagsterInstance, daemon_type: str, at: float) -> None:
    instance.add_daemon_heartbeat(DaemonHeartbeat(timestamp=at, daemon_type=daemon_type, daemon_id="d-1", errors=[]))


def test_the_local_coordinator_is_dagsters_queue(instance: dg.DagsterInstance) -> None:
    assert isinstance(instance.run_coordinator, LocalRunCoordinator)
    assert isinstance(instance.run_coordinator, dg.QueuedRunCoordinator)  # what the UI's banner checks


def test_commands_queue_only_while_the_queue_daemon_heartbeats(instance: dg.DagsterInstance) -> None:
    now = time.time()
    assert not queues(instance)  # no daemon has ever run: in process
    _beat(instance, "SENSOR", now)
    assert not queues(instance)  # another daemon's heartbeat says nothing about the queue
    _beat(instance, "QUEUED_RUN_COORDINATOR", now - 200)
    assert not queues(instance)  # a daemon that stopped 200 s ago
    _beat(instance, "QUEUED_RUN_COORDINATOR", now - 5)
    assert queues(instance)
    assert daemon_dequeues(instance, now=now + 60) and not daemon_dequeues(instance, now=now + 80)


def test_a_submitted_job_waits_in_the_queue_with_its_id_tags_plan_and_location(
    instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPX_DAGSTER_LOCATION", "opx-location")
    run_id = "0f3c1a52-2d4b-4c8e-9a77-5e1d2c3b4a59"
    tags = {"opx/trigger_type": "MANUAL", "opx/audit_id": "a-1"}
    location = Settings.from_env().dagster_location  # OPX_DAGSTER_LOCATION
    _beat(instance, "QUEUED_RUN_COORDINATOR", time.time())  # a daemon dequeues: the run waits for it
    assert submit_job(instance, "daily_patterns_job", ["2025-10-01", "2025-10-03"], tags, run_id=run_id,
                      location=location) == run_id
    run = instance.get_run_by_id(run_id)
    assert run is not None and run.status == dg.DagsterRunStatus.QUEUED and run.job_name == "daily_patterns_job"
    assert {key: run.tags.get(key) for key in [*tags, "dagster/asset_partition_range_start",
                                               "dagster/asset_partition_range_end"]} == {
        **tags, "dagster/asset_partition_range_start": "2025-10-01", "dagster/asset_partition_range_end": "2025-10-03"}
    # The daemon finds the code location by the name the run carries and runs the job's whole plan.
    assert run.remote_job_origin.location_name == "opx-location"
    assert run.job_code_origin.repository_origin.code_pointer.module == "opx_learning.definitions"
    assert sorted(run.step_keys_to_execute or []) == ["daily_outcomes", "pattern_summaries_daily"]
    enqueued = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.PIPELINE_ENQUEUED).records
    assert len(enqueued) == 1


def test_with_no_daemon_a_submitted_job_is_launched_at_once(instance: dg.DagsterInstance) -> None:
    run_id = submit_job(instance, "daily_patterns_job", ["2025-10-01"], {"opx/trigger_type": "MANUAL"})
    from opx_learning.app.queue import follow

    run = follow(instance, run_id, poll_every=0.2, timeout=120)
    assert run is not None and run.status in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.SUCCESS)
    enqueued = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.PIPELINE_ENQUEUED).records
    starting = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.PIPELINE_STARTING).records
    assert not enqueued and len(starting) == 1  # launched by the coordinator, never queued


def test_a_job_that_cannot_be_submitted_says_why(instance: dg.DagsterInstance) -> None:
    with pytest.raises(RuntimeError, match=r"(?s)did not submit run .* of no_such_job .*Job \"no_such_job\" not found"):
        submit_job(instance, "no_such_job", ["2025-10-01"], {})


def test_following_a_run_the_daemon_already_dequeued_still_reports_it_queued(instance: dg.DagsterInstance) -> None:
    from opx_learning.app.queue import follow

    _beat(instance, "QUEUED_RUN_COORDINATOR", time.time())
    run_id = submit_job(instance, "daily_patterns_job", ["2025-10-01"], {})
    instance.report_run_canceled(instance.get_run_by_id(run_id))  # left the queue before the first poll
    lines: list[str] = []
    assert follow(instance, run_id, progress=lines.append, poll_every=0.01).status == dg.DagsterRunStatus.CANCELED
    assert [line.split()[2] for line in lines] == ["QUEUED", "CANCELED"]
