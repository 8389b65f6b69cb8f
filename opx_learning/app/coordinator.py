"""The run coordinator of a single-machine (SQLite) instance: Dagster's queue, used only while a daemon is alive.

Runs Dagster itself submits (the UI's Materialize and backfills, schedules, sensors) are
queued, as with `QueuedRunCoordinator`, and the daemon `dagster dev` starts dequeues them
within the queue's limits. `opx-learning`'s own commands (trigger, the REST API, the demo)
submit to the queue only while the daemon's queue loop is heartbeating; with no daemon
(plain CLI use, tests) they run their run in process, so nothing waits for a daemon that
is not there. With OPX_LAUNCH=location they are submitted through the code location even
with no daemon, and this coordinator launches such a run at once instead of leaving it
queued (as Dagster's default coordinator would). A production instance uses Dagster's `QueuedRunCoordinator` itself, whose
runs always go through the queue (opx_learning/deploy/dagster.local-production.yaml).
"""

from __future__ import annotations

import time

import dagster as dg

# The daemon heartbeats every 30 s; one missed beat is tolerated.
HEARTBEAT_FRESH_SECONDS = 75.0
QUEUE_DAEMON = "QUEUED_RUN_COORDINATOR"
# The tag `app.queue.submit_job` puts on the runs `opx-learning` submits.
SUBMITTED_BY_TAG = "opx/submitted_by"


class LocalRunCoordinator(dg.QueuedRunCoordinator):
    """Dagster's queued run coordinator; `opx-learning`'s own submissions with no daemon alive are launched at once (see module)."""

    def submit_run(self, context: dg.SubmitRunContext) -> dg.DagsterRun:
        """Queue the run, unless `opx-learning` submitted it with no daemon to dequeue it: then launch it now."""
        run = context.dagster_run
        if run.tags.get(SUBMITTED_BY_TAG) != "opx-learning" or run.status != dg.DagsterRunStatus.NOT_STARTED:
            return super().submit_run(context)
        with dg.DagsterInstance.get() as instance:
            if daemon_dequeues(instance):
                return super().submit_run(context)
            instance.launch_run(run.run_id, context.workspace)
            return instance.get_run_by_id(run.run_id) or run


def daemon_dequeues(instance: dg.DagsterInstance, now: float | None = None) -> bool:
    """Whether the instance's daemon has heartbeaten its run queue loop within the last 75 s."""
    heartbeat = instance.get_daemon_heartbeats().get(QUEUE_DAEMON)
    return heartbeat is not None and (now or time.time()) - heartbeat.timestamp < HEARTBEAT_FRESH_SECONDS
