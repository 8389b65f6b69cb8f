"""The run coordinator of a single-machine (SQLite) instance: Dagster's queue, used only while a daemon is alive.

Runs Dagster itself submits (the UI's Materialize and backfills, schedules, sensors) are
queued, as with `QueuedRunCoordinator`, and the daemon `dagster dev` starts dequeues them
within the queue's limits. `opx-learning`'s own commands (trigger, the REST API, the demo)
submit to the queue only while the daemon's queue loop is heartbeating; with no daemon
(plain CLI use, tests) they run their run in process, so nothing waits for a daemon that
is not there. A production instance uses Dagster's `QueuedRunCoordinator` itself, whose
runs always go through the queue (opx_learning/deploy/dagster.local-production.yaml).
"""

from __future__ import annotations

import time

import dagster as dg

# The daemon heartbeats every 30 s; one missed beat is tolerated.
HEARTBEAT_FRESH_SECONDS = 75.0
QUEUE_DAEMON = "QUEUED_RUN_COORDINATOR"


class LocalRunCoordinator(dg.QueuedRunCoordinator):
    """Dagster's queued run coordinator; `opx-learning` commands use it only while a daemon dequeues (see module)."""


def daemon_dequeues(instance: dg.DagsterInstance, now: float | None = None) -> bool:
    """Whether the instance's daemon has heartbeaten its run queue loop within the last 75 s."""
    heartbeat = instance.get_daemon_heartbeats().get(QUEUE_DAEMON)
    return heartbeat is not None and (now or time.time()) - heartbeat.timestamp < HEARTBEAT_FRESH_SECONDS
