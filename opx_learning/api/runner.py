"""Background execution of accepted triggers: one worker process per request, at most N at a time.

An accepted request already has its RUNNING audit record. On an instance whose run
coordinator queues runs (`app.queue.queues`), a thread submits the run to the queue at once
and follows it until it finishes: the run executes in a run worker started by the daemon,
under the queue's limits, never in the API's process; this server holds no slot for it.

On the embedded instance a daemon thread waits for a
slot, starts `python -m opx_learning.api.worker` (own session, so it outlives an API
restart) which runs the same launch code as `opx-learning trigger` with the record adopted
through the `opx/audit_id` run tag and the attempt's adoption token (handed to the worker
in its environment, never on its command line), and waits for it. The run completes the record; if the
worker exits without that (crash, kill) the thread completes it as FAILED at once, and the
audit sensor (RUN_TERMINATED) covers a worker that dies with the API. Requests still queued
when the server stops are completed as FAILED. Worker output goes to
`$OPX_HOME/api/runs/<audit id>.log`.

While a request waits for a slot (or its worker starts) it has no Dagster run, so a
heartbeat thread tells the audit sensor every 30 s that this server still holds it
(`defs.sensors.heartbeat_requests`); without that, a request queued for more than 10
minutes would be closed as RUN_TERMINATED. The Dagster instance is initialised when the
server starts (`ensure_dagster_home`), before concurrent workers open it.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path

from opx_learning.app.instance import ensure_dagster_home
from opx_learning.app.manual import ManualPlan, fail_running, launch_manual
from opx_learning.app.queue import queues
from opx_learning.backends import guard_for
from opx_learning.config import DEFAULT_API_MAX_RUNS, Settings

MAX_RUNS_ENV = "OPX_API_MAX_RUNS"
TOKEN_ENV = "OPX_ADOPTION_TOKEN"
DEFAULT_MAX_RUNS = DEFAULT_API_MAX_RUNS
_log = logging.getLogger("opx_learning.api")


def settings_env(settings: Settings) -> dict[str, str]:
    """Environment variables that reproduce `settings` (and the Dagster home) in a worker process."""
    env = {
        "OPX_BACKEND": settings.backend,
        "OPX_HOME": str(settings.home),
        "AWS_REGION": settings.region,
        "OPX_AUDIT_TABLE": settings.audit_table,
        "OPX_CONFIG_TABLE": settings.config_table,
        "OPX_OUTCOMES_TABLE": settings.outcomes_table,
        "OPX_ALERTS_TOPIC_NAME": settings.alerts_topic_name,
        "OPX_METRICS_NAMESPACE": settings.metrics_namespace,
        "OPX_PARTITIONS_START": settings.partitions_start.isoformat(),
        "OPX_API_MAX_RUNS": str(settings.api_max_runs),
        "DAGSTER_HOME": str(ensure_dagster_home(settings)),
        "OPX_UI_URL": settings.ui_url,
        "OPX_DAGSTER_LOCATION": settings.dagster_location,
        "OPX_LAUNCH": settings.launch,
    }
    optional = {
        "OPX_OUTCOMES_S3_URI": settings.outcomes_s3_uri,
        "OPX_ASSETS_S3_URI": settings.assets_s3_uri,
        "OPX_ALERTS_TOPIC_ARN": settings.alerts_topic_arn,
        "OPX_PRINCIPALS": str(settings.principals_file) if settings.principals_file else None,
        "OPX_RATE_LIMITS": settings.rate_limits,
        "OPX_AUTOMATION_RATE_LIMITS": settings.automation_rate_limits,
        "OPX_MAINTENANCE_WINDOWS": settings.maintenance_windows,
        "OPX_TRUSTED_IDENTITY_HEADER": settings.trusted_identity_header,
    }
    env.update({name: value for name, value in optional.items() if value})
    return env


class BackgroundRuns:
    """Runs accepted triggers in worker processes, `max_runs` at a time.

    Args:
        settings: backend settings the workers use.
        max_runs: concurrent worker processes (default `settings.api_max_runs`, `OPX_API_MAX_RUNS`).
        environ: the environment the worker processes inherit (the app factory passes its process's),
            with `settings_env(settings)` over it.
    """

    def __init__(self, settings: Settings, max_runs: int | None = None, *, environ: Mapping[str, str]) -> None:
        self.settings = settings
        self.max_runs = max_runs or settings.api_max_runs
        self._slots = threading.Semaphore(self.max_runs)
        self._lock = threading.Lock()
        self._queued: set[str] = set()
        self._running: dict[str, subprocess.Popen[bytes]] = {}
        self._following: set[str] = set()
        self._queues: bool | None = None
        self._stopping = False
        self._env = {**environ, **settings_env(settings)}
        self.log_dir = settings.home / "api" / "runs"
        self._wake = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def counts(self) -> dict[str, int]:
        """`{running, queued}` worker counts."""
        with self._lock:
            return {"running": len(self._running) + len(self._following), "queued": len(self._queued)}

    def queues(self) -> bool:
        """Whether runs are submitted through the code location (a queuing instance, or OPX_LAUNCH=location), not run in workers."""
        if self._queues is None:
            import dagster as dg

            with dg.DagsterInstance.from_config(self._env["DAGSTER_HOME"]) as instance:
                self._queues = queues(instance, self._env["OPX_LAUNCH"])
        return self._queues

    def submit(self, plan: ManualPlan, audit_id: str, principal: str, token: str) -> None:
        """Queue the run of an accepted trigger (returns at once); `token` is the attempt's adoption token."""
        if self.queues():
            with self._lock:
                self._following.add(audit_id)
            self._start_heartbeat()
            threading.Thread(target=self._submit_and_follow, args=(plan, audit_id, token), name=f"opx-follow-{audit_id}",
                             daemon=True).start()
            return
        with self._lock:
            self._queued.add(audit_id)
            if self._heartbeat is None:
                self._heartbeat = threading.Thread(target=self._beat, name="opx-queue-heartbeat", daemon=True)
                self._heartbeat.start()
        self._wake.set()
        thread = threading.Thread(target=self._run, args=(plan, audit_id, principal, token), name=f"opx-run-{audit_id}", daemon=True)
        thread.start()

    def _start_heartbeat(self) -> None:
        with self._lock:
            if self._heartbeat is None:
                self._heartbeat = threading.Thread(target=self._beat, name="opx-queue-heartbeat", daemon=True)
                self._heartbeat.start()

    def _submit_and_follow(self, plan: ManualPlan, audit_id: str, token: str) -> None:
        """Submit the run to the instance's queue, follow it, and complete its record FAILED if the run did not."""
        import dagster as dg

        try:
            with dg.DagsterInstance.from_config(self._env["DAGSTER_HOME"]) as instance:
                summary, record = launch_manual(plan, audit_id, token, guard=guard_for(self.settings),
                                                settings=self.settings, instance=instance)
            _log.info("request %s: run %s ended, audit record %s", audit_id, summary.run_id,
                      record.status.value if record is not None else None)
        except Exception as error:  # noqa: BLE001 - logged; the record is completed FAILED below
            _log.exception("request %s: the queued run could not be submitted or followed", audit_id)
            self._fail(audit_id, f"the run could not be submitted to the queue or followed: {type(error).__name__}: {error}")
        finally:
            with self._lock:
                self._following.discard(audit_id)
            self._wake.set()

    def stop(self) -> None:
        """Complete queued, never started requests as FAILED; running workers carry on in their own session."""
        with self._lock:
            self._stopping = True
            queued = sorted(self._queued)
            self._queued.clear()
        for audit_id in queued:
            self._fail(audit_id, "the API server stopped before the run started; trigger it again")
        self._wake.set()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=10)

    def _run(self, plan: ManualPlan, audit_id: str, principal: str, token: str) -> None:
        with self._slots:
            with self._lock:
                if self._stopping or audit_id not in self._queued:
                    return
                self._queued.discard(audit_id)
                try:
                    process = self._spawn(plan, audit_id, principal, token)
                except OSError as error:
                    process = None
                    failure = f"cannot start the background worker: {error}"
                else:
                    self._running[audit_id] = process
            if process is None:
                self._fail(audit_id, failure)
                return
            code = process.wait()
            with self._lock:
                self._running.pop(audit_id, None)
            self._wake.set()  # release its heartbeat now
        if code != 0:
            self._fail(audit_id, f"background worker (pid {process.pid}) exited with code {code}; see {self._log_file(audit_id)}")

    def _beat(self) -> None:
        """Heartbeat the held requests (queued or in a worker) until the server stops; release the others."""
        from opx_learning.defs.sensors import HEARTBEAT_EVERY, heartbeat_requests

        instance = None
        last: set[str] = set()
        while True:
            self._wake.clear()
            with self._lock:
                stopping = self._stopping
                held = set() if stopping else self._queued | set(self._running) | self._following
            try:
                if instance is None:
                    import dagster as dg

                    instance = dg.DagsterInstance.from_config(self._env["DAGSTER_HOME"])
                heartbeat_requests(instance, sorted(held), sorted(last - held))
                last = held
            except Exception:  # noqa: BLE001 - retried on the next beat; the sensor waits 2 minutes
                _log.exception("could not heartbeat the queued requests %s", ", ".join(sorted(held)))
            if stopping:
                if instance is not None:
                    instance.dispose()
                return
            self._wake.wait(HEARTBEAT_EVERY.total_seconds())

    def _spawn(self, plan: ManualPlan, audit_id: str, principal: str, token: str) -> subprocess.Popen[bytes]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        payload = json.dumps({"plan": plan.to_dict(), "audit_id": audit_id, "principal": principal})
        with open(self._log_file(audit_id), "ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "opx_learning.api.worker", payload],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**self._env, TOKEN_ENV: token},
                start_new_session=True,
            )

    def _log_file(self, audit_id: str) -> Path:
        return self.log_dir / f"{audit_id.replace('#', '_')}.log"

    def _fail(self, audit_id: str, error: str) -> None:
        try:
            fail_running(guard_for(self.settings), audit_id, error)
        except Exception:  # noqa: BLE001 - the audit sensor completes the record later
            _log.exception("could not complete audit record %s as FAILED", audit_id)
