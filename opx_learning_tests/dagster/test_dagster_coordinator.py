"""The local instance queues like Dagster's QueuedRunCoordinator; opx-learning's commands use the queue only while a daemon dequeues."""

from __future__ import annotations

import time

import dagster as dg
from dagster._daemon.types import DaemonHeartbeat

from opx_learning.app.coordinator import LocalRunCoordinator, daemon_dequeues
from opx_learning.app.queue import queues


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
