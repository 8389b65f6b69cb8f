"""Dagster's production topology on a real PostgreSQL server (docs/deploy.md).

The instance is `dagster.local-production.yaml` configured only through its documented
variables; the gRPC code server, the webserver and the daemon run as separate processes
(`postgres_stack`). The tests share that stack, so a killed run worker is set up first
and checked last, while the audit sensor's three minutes pass under the other tests.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from opx_learning.backends import guard_for
from opx_learning.config import get_settings
from opx_learning.core.synthetic import generate_outcomes
from opx_learning.deploy import LOCAL_PRODUCTION_DAGSTER_YAML
from opx_learning.safety.guard import Guard
from opx_learning.safety.models import AuditRecord
from opx_learning.safety.principals import resolve_principal
from opx_learning.stores.outcomes import outcome_store
from opx_learning_tests.conftest import _free_port
from opx_learning_tests.graphql import BACKFILL_RUNS, LAUNCH_BACKFILL
from opx_learning_tests.postgres.conftest import (
    BIN,
    REST_TOKEN,
    PostgresServer,
    Stack,
    wait_for,
)
from opx_learning_tests.processes import spawn, stop

pytestmark = pytest.mark.xdist_group("postgres")

LAUNCH_RUN = """
mutation($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on PythonError { message }
    ... on InvalidStepError { invalidStepKey }
  }
}"""
RUN = """
query($id: ID!) {
  runOrError(runId: $id) {
    ... on Run {
      status
      tags { key value }
      eventConnection(afterCursor: null) {
        events {
          __typename
          ... on MessageEvent { message timestamp }
        }
      }
    }
  }
}"""
RUNS = """
query($filter: RunsFilter!) {
  runsOrError(filter: $filter) { ... on Runs { results { runId status tags { key value } } } }
}"""
START_SCHEDULE = """
mutation($selector: ScheduleSelector!) {
  startSchedule(scheduleSelector: $selector) {
    __typename
    ... on ScheduleStateResult { scheduleState { id status } }
    ... on PythonError { message }
  }
}"""
STOP_SCHEDULE = """
mutation($id: String!) { stopRunningSchedule(id: $id) { __typename } }"""
LOCATION = "opx_learning.definitions"
REPOSITORY = "__repository__"
FINISHED = ("SUCCESS", "FAILURE", "CANCELED")
BACKFILL_START, BACKFILL_END = "2025-09-01", "2025-11-29"  # 90 daily partitions
KILLED_DAY, KILL_SWITCH_DAY = "2025-11-30", "2025-11-29"
CLI_DAY, REST_DAY, QUEUED_DAY = "2025-11-20", "2025-11-21", "2025-11-22"  # manual triggers through the queue
RUN_TERMINATED_WITHIN = 180  # seconds after the kill (the audit sensor: records older than 2 min, every 60 s)
ALERT_AFTER_TERMINATED = 75
DESCRIBE_INSTANCE = """
import dagster as dg
from opx_learning.backends import guard_for
with dg.DagsterInstance.get() as i:
    print(type(i.run_coordinator).__name__, type(i.run_launcher).__name__, type(i.compute_log_manager).__name__,
          i.run_coordinator.get_run_queue_config().tag_concurrency_limits, i.run_monitoring_enabled)
"""  # the alert sensor's next tick (every 60 s)


def _selector() -> dict[str, str]:
    return {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}


def _guard(stack: Stack) -> Guard:
    return guard_for(get_settings(stack.env))


def _records_of(stack: Stack, run_id: str) -> list[AuditRecord]:
    return [record for record in _guard(stack).audit.recent(500) if record.run_id == run_id]


def _run(stack: Stack, run_id: str) -> dict[str, Any]:
    return stack.graphql(RUN, {"id": run_id})["runOrError"]


def _finished(stack: Stack, run_id: str) -> dict[str, Any] | None:
    run = _run(stack, run_id)
    return run if run["status"] in FINISHED else None


def _event_times(run: dict[str, Any]) -> dict[str, float]:
    """First timestamp (seconds) of each event type of a run."""
    times: dict[str, float] = {}
    for event in run["eventConnection"]["events"]:
        if "timestamp" in event:
            times.setdefault(event["__typename"], int(event["timestamp"]) / 1000)
    return times


def _launch_partition_run(stack: Stack, job: str, partition: str) -> str:
    """Launch one partition of `job` over GraphQL, as the UI does (the queued coordinator enqueues it)."""
    params = {
        "selector": {**_selector(), "jobName": job},
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": partition}]},
    }
    launched = stack.graphql(LAUNCH_RUN, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return launched["run"]["runId"]


@pytest.fixture(scope="module")
def seeded_stack(postgres_stack: Stack) -> Stack:
    """The stack with outcomes for the backfill's 90 days, two more days, and yesterday (the schedule's tick)."""
    store = outcome_store(get_settings(postgres_stack.env))
    store.write(generate_outcomes("2025-09-01", "2025-12-01", per_day=40, seed=7))
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    store.write(
        generate_outcomes(
            yesterday.isoformat(),
            (yesterday + timedelta(days=2)).isoformat(),
            per_day=40,
            seed=8,
        )
    )
    return postgres_stack


@pytest.fixture(scope="module")
def killed_run(seeded_stack: Stack) -> dict[str, Any]:
    """A daily pattern run whose worker was SIGKILLed mid-run: its audit record RUNNING, its work not done.

    The test holds the audit store's write lock most of the time, letting writers in through
    short gaps, and looks for the run's record each time it holds the lock: once the record
    is RUNNING the worker's completing write has to wait for the lock, so the kill lands
    between the two.
    """
    stack = seeded_stack
    db = get_settings(stack.env).state_db
    run_id = _launch_partition_run(stack, "daily_patterns_job", KILLED_DAY)
    deadline = time.monotonic() + 120
    wait_for(db.exists, 120, f"the audit store {db}", interval=0.05)
    with contextlib.closing(sqlite3.connect(db, timeout=30, isolation_level=None)) as conn:
        while True:
            assert time.monotonic() < deadline, f"run {run_id} never began its audit record\n{stack.logs()}"
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute("SELECT status FROM audit WHERE run_id = ?", (run_id,)).fetchone()
            if row is not None:
                assert row[0] == "RUNNING", f"run {run_id} completed its record ({row[0]}) before it could be killed"
                pid = _worker_pid(stack, run_id)
                os.kill(pid, signal.SIGKILL)
                killed_at = time.time()
                conn.execute("ROLLBACK")
                return {"run_id": run_id, "pid": pid, "killed_at": killed_at}
            time.sleep(0.02)
            conn.execute("ROLLBACK")
            time.sleep(0.005)


def _worker_pid(stack: Stack, run_id: str) -> int:
    """The run worker's pid, from the run's "Executing steps in process (pid: N)" engine event."""
    for event in _run(stack, run_id)["eventConnection"]["events"]:
        found = re.search(r"Executing steps in process \(pid: (\d+)\)", event.get("message") or "")
        if found:
            return int(found.group(1))
    raise AssertionError(f"no worker pid among the events of run {run_id}")


def test_postgres_killed_run_worker_ends_failed(seeded_stack: Stack, killed_run: dict[str, Any]) -> None:
    run = wait_for(
        lambda: _finished(seeded_stack, killed_run["run_id"]),
        60,
        "the killed run to end",
    )
    assert run["status"] == "FAILURE"
    events = run["eventConnection"]["events"]
    assert "RunEnqueuedEvent" in {event["__typename"] for event in events}  # it went through the queue
    assert any(f"pid: {killed_run['pid']}" in (event.get("message") or "") for event in events)
    assert any(
        "signal 9" in (event.get("message") or "") or "SIGKILL" in (event.get("message") or "") for event in events
    ), [event.get("message") for event in events]


def test_postgres_instance_info_loads_with_the_documented_variables(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    (tmp_path / "dagster.yaml").write_text(LOCAL_PRODUCTION_DAGSTER_YAML.read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "OPX_"))}
    env |= {**postgres_server.dagster_env(), "DAGSTER_HOME": str(tmp_path)}
    info = subprocess.run(
        [str(BIN / "dagster"), "instance", "info"],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert info.returncode == 0, info.stderr
    for storage in (
        "PostgresRunStorage",
        "PostgresEventLogStorage",
        "PostgresScheduleStorage",
    ):
        assert f": {storage}" in info.stdout, info.stdout
    loaded = subprocess.run(
        [sys.executable, "-c", DESCRIBE_INSTANCE],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.split(" ", 3)[:3] == [
        "QueuedRunCoordinator",
        "DefaultRunLauncher",
        "LocalComputeLogManager",
    ]
    assert "'key': 'opx/trigger_type', 'value': 'MANUAL', 'limit': 5" in loaded.stdout
    assert loaded.stdout.strip().endswith("True")

    env.pop("DAGSTER_PG_PORT")
    missing = subprocess.run(
        [str(BIN / "dagster"), "instance", "info"],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode != 0
    assert "DAGSTER_PG_PORT" in missing.stdout + missing.stderr


def test_postgres_backfill_of_90_days_is_one_run_stored_in_postgres(
    seeded_stack: Stack,
) -> None:
    stack = seeded_stack
    assets = ("daily_outcomes", "pattern_summaries_daily")
    params = {
        "partitionsByAssets": [
            {
                "assetKey": {"path": [name]},
                "partitions": {"range": {"start": BACKFILL_START, "end": BACKFILL_END}},
            }
            for name in assets
        ],
        "title": "90-day backfill on Postgres",
    }
    launched_at = time.time()
    launched = stack.graphql(LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched

    def finished_runs() -> list[dict[str, Any]] | None:
        runs = stack.graphql(BACKFILL_RUNS, {"id": launched["backfillId"]})["partitionBackfillOrError"]["runs"]
        return runs if runs and all(run["status"] in FINISHED for run in runs) else None

    runs = wait_for(finished_runs, 240, "the backfill's runs", details=stack.logs)
    assert [run["status"] for run in runs] == ["SUCCESS"]  # single-run backfill: one run for 90 days
    run_id = runs[0]["runId"]
    times = _event_times(_run(stack, run_id))
    print(
        f"\nPostgres stack, 90-day backfill: launch -> run success {times['RunSuccessEvent'] - launched_at:.1f} s; "
        f"queue (enqueued -> worker started) {times['RunStartEvent'] - times['RunEnqueuedEvent']:.1f} s"
    )

    expected = {(datetime(2025, 9, 1) + timedelta(days=n)).strftime("%Y-%m-%d") for n in range(90)}
    assert max(expected) == BACKFILL_END
    with (
        stack.server.connect() as conn,
        conn.cursor() as cursor,
    ):  # straight from PostgreSQL, not through Dagster
        cursor.execute(
            "SELECT asset_key, partition FROM event_logs WHERE run_id = %s AND dagster_event_type = 'ASSET_MATERIALIZATION'",
            (run_id,),
        )
        rows = cursor.fetchall()
    for name in assets:
        stored = [partition for key, partition in rows if json.loads(key) == [name]]
        assert sorted(stored) == sorted(expected), name

    (record,) = _records_of(stack, run_id)
    assert (
        record.operation_type.value,
        record.trigger_type.value,
        record.status.value,
    ) == (
        "PATTERN_EXTRACTION",
        "BACKFILL",
        "SUCCESS",
    )
    assert record.parameters["start_date"] == "2025-09-01T00:00:00.000Z"
    assert record.parameters["end_date"] == "2025-11-30T00:00:00.000Z"


def test_postgres_schedule_tick_through_the_daemon_is_audited_scheduled(
    seeded_stack: Stack,
) -> None:
    import dagster as dg
    from dagster._core.scheduler.instigation import ScheduleInstigatorData

    stack = seeded_stack
    name = "daily_patterns_schedule"
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    with pytest.MonkeyPatch.context() as env:
        for key, value in stack.env.items():
            env.setenv(key, value)
        instance = dg.DagsterInstance.get()
    with instance:
        # The daemon's scheduler looks at schedules at the start of each minute: start the schedule
        # well inside a minute so it is seen only once its start time has moved.
        wait_for(
            lambda: 3 <= datetime.now(UTC).second <= 40,
            60,
            "the middle of a minute",
            interval=0.2,
        )
        started = stack.graphql(START_SCHEDULE, {"selector": {**_selector(), "scheduleName": name}})["startSchedule"]
        assert started["__typename"] == "ScheduleStateResult", started
        # Started now, its first tick would be the next 00:00 UTC. Started a minute before the last
        # one, the daemon launches that tick as it would after being down across midnight.
        (state,) = [s for s in instance.all_instigator_state() if s.name == name]
        data = state.instigator_data
        assert isinstance(data, ScheduleInstigatorData)
        instance.update_instigator_state(
            state.with_data(ScheduleInstigatorData(data.cron_schedule, start_timestamp=midnight.timestamp() - 60))
        )
    try:

        def scheduled_run() -> dict[str, Any] | None:
            found = stack.graphql(
                RUNS,
                {"filter": {"tags": [{"key": "dagster/schedule_name", "value": name}]}},
            )
            runs = found["runsOrError"]["results"]
            return runs[0] if runs and runs[0]["status"] in FINISHED else None

        run = wait_for(
            scheduled_run,
            150,
            f"the daemon to launch the {name} tick",
            details=stack.logs,
            interval=1,
        )
    finally:
        stack.graphql(STOP_SCHEDULE, {"id": started["scheduleState"]["id"]})
    assert run["status"] == "SUCCESS"
    tags = {tag["key"]: tag["value"] for tag in run["tags"]}
    yesterday = (midnight - timedelta(days=1)).strftime("%Y-%m-%d")
    assert tags["dagster/partition"] == yesterday
    (record,) = _records_of(stack, run["runId"])
    assert (
        record.trigger_type.value,
        record.status.value,
        record.triggered_by.principal,
    ) == (
        "SCHEDULED",
        "SUCCESS",
        "system",
    )
    assert record.parameters["start_date"] == f"{yesterday}T00:00:00.000Z"


def test_postgres_kill_switch_skips_a_queued_run(seeded_stack: Stack) -> None:
    stack = seeded_stack
    settings = get_settings(stack.env)
    guard = _guard(stack)
    admin = resolve_principal("ops-admin", settings=settings, env=stack.env)
    guard.kill_switch.disable(admin, "Postgres stack test: queued runs must skip")
    try:
        run_id = _launch_partition_run(stack, "daily_patterns_job", KILL_SWITCH_DAY)
        run = wait_for(
            lambda: _finished(stack, run_id),
            120,
            "the run under the kill switch",
            details=stack.logs,
        )
    finally:
        guard.kill_switch.enable(admin)
    assert run["status"] == "SUCCESS"  # ended gracefully: nothing materialized, the reason recorded
    assert "RunEnqueuedEvent" in {event["__typename"] for event in run["eventConnection"]["events"]}
    (record,) = _records_of(stack, run_id)
    assert (record.status.value, record.skip_reason) == (
        "SKIPPED",
        "KILL_SWITCH_ACTIVE",
    )
    with stack.server.connect() as conn, conn.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = 'ASSET_MATERIALIZATION'"
            " AND asset_key = %s",
            (run_id, json.dumps(["pattern_summaries_daily"])),
        )
        assert cursor.fetchone()[0] == 0


def _cli(stack: Stack, *args: str, timeout: float = 300) -> tuple[int, str, str, int]:
    """Run `opx-learning ARGS` against the stack's instance: exit code, stdout, stderr, pid."""
    process = spawn([str(BIN / "opx-learning"), *args], env=stack.env, cwd=stack.base,
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        out, err = process.communicate(timeout=timeout)
    finally:
        stop(process)
    return process.returncode, out, err, process.pid


def _tags(run: dict[str, Any]) -> dict[str, str]:
    return {tag["key"]: tag["value"] for tag in run["tags"]}


def _day_range(day: str) -> tuple[str, str]:
    return day, (datetime.fromisoformat(day) + timedelta(days=1)).date().isoformat()


def test_postgres_cli_trigger_is_enqueued_and_runs_in_a_run_worker(seeded_stack: Stack) -> None:
    stack = seeded_stack
    start, end = _day_range(CLI_DAY)
    began = time.time()
    code, out, err, cli_pid = _cli(stack, "trigger", "extract-patterns", "--start", start, "--end", end, "--json")
    wall = time.time() - began
    assert code == 0, f"{out}\n{err}\n{stack.logs()}"
    report = json.loads(out)
    assert (report["status"], report["triggered_by"]["principal"]) == ("SUCCESS", "alice")
    assert report["executed"] == "in a run worker, submitted through the code location (queued while a daemon dequeues)"
    assert report["run"]["materialized"] == {"daily_outcomes": 1, "pattern_summaries_daily": 1}
    run_id = report["run"]["run_id"]
    assert re.search(rf"run {run_id} QUEUED .*\n.*run {run_id} .*SUCCESS", err, re.DOTALL), err  # the progress lines
    run = _run(stack, run_id)
    assert run["status"] == "SUCCESS"
    assert "RunEnqueuedEvent" in {event["__typename"] for event in run["eventConnection"]["events"]}
    assert _worker_pid(stack, run_id) != cli_pid  # executed by a worker of the code server, not by the CLI
    tags = _tags(run)
    assert tags["opx/trigger_type"] == "MANUAL" and tags["opx/audit_id"] == report["audit_id"]
    with stack.server.connect() as conn, conn.cursor() as cursor:
        cursor.execute("SELECT value FROM run_tags WHERE run_id = %s AND key = '.dagster/grpc_info'", (run_id,))
        (grpc_info,) = cursor.fetchone()
    assert json.loads(grpc_info)["port"] == int(stack.env["OPX_GRPC_PORT"])  # launched by the daemon on the code server
    assert "opx/pid" not in tags
    record = _guard(stack).audit.get(report["audit_id"])
    assert record is not None
    assert (record.status.value, record.trigger_type.value, record.triggered_by.principal, record.run_id) == (
        "SUCCESS", "MANUAL", "alice", run_id,
    )  # fmt: skip
    times = _event_times(run)
    print(
        f"\nPostgres stack, CLI trigger of one day: enqueued -> run success "
        f"{times['RunSuccessEvent'] - times['RunEnqueuedEvent']:.1f} s (enqueued -> worker started "
        f"{times['RunStartEvent'] - times['RunEnqueuedEvent']:.1f} s); the whole command {wall:.1f} s"
    )


def test_postgres_rest_trigger_is_enqueued_and_runs_in_a_run_worker(seeded_stack: Stack) -> None:
    import httpx

    stack = seeded_stack
    port = _free_port()
    with open(stack.base / "api.log", "w") as log:
        api = spawn([str(BIN / "opx-learning"), "api", "--host", "127.0.0.1", "--port", str(port)],
                    env=stack.env, cwd=stack.base, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
        wait_for(lambda: _get(client, "/health"), 90, "the REST API", details=stack.logs)
        start, end = _day_range(REST_DAY)
        accepted = client.post(
            "/learning/extract-patterns",
            headers={"Authorization": f"Bearer {REST_TOKEN}"},
            json={"startDate": f"{start}T00:00:00.000Z", "endDate": f"{end}T00:00:00.000Z"},
        )
        assert accepted.status_code == 202, accepted.text
        audit_id = accepted.json()["auditId"]

        def completed() -> AuditRecord | None:
            record = _guard(stack).audit.get(audit_id)
            return record if record is not None and record.status.value != "RUNNING" else None

        record = wait_for(completed, 240, f"the REST request {audit_id}", details=stack.logs)
        assert (record.status.value, record.trigger_type.value, record.triggered_by.principal) == (
            "SUCCESS", "MANUAL", "rest-caller",
        )  # fmt: skip
        run = wait_for(lambda: _finished(stack, record.run_id), 60, "the REST request's run to end")
        assert run["status"] == "SUCCESS"
        assert "RunEnqueuedEvent" in {event["__typename"] for event in run["eventConnection"]["events"]}
        assert _worker_pid(stack, record.run_id) != api.pid
        assert _tags(run)["opx/trigger_type"] == "MANUAL"
        assert not list((stack.opx_home / "api" / "runs").glob("*.log"))  # no in-process background worker
        wait_for(lambda: _get(client, "/health")["runs"] == {"running": 0, "queued": 0}, 30, "the API to let go")
    finally:
        stop(api)


def _get(client: Any, path: str) -> Any:
    try:
        response = client.get(path)
    except Exception:  # noqa: BLE001 - not listening yet
        return None
    return response.json() if response.status_code == 200 else None


def test_postgres_manual_limit_holds_a_queued_trigger_and_the_kill_switch_skips_it(seeded_stack: Stack) -> None:
    import dagster as dg
    from dagster._core.utils import make_new_run_id

    stack = seeded_stack
    settings = get_settings(stack.env)
    guard = _guard(stack)
    admin = resolve_principal("ops-admin", settings=settings, env=stack.env)
    with pytest.MonkeyPatch.context() as env:
        for key, value in stack.env.items():
            env.setenv(key, value)
        instance = dg.DagsterInstance.get()
    with instance:
        # Five MANUAL runs in progress fill the queue's opx/trigger_type=MANUAL limit (5).
        placeholders = [
            instance.add_run(
                dg.DagsterRun(job_name="manual_placeholder", run_id=make_new_run_id(),
                              status=dg.DagsterRunStatus.STARTED, tags={"opx/trigger_type": "MANUAL"})
            ).run_id
            for _ in range(5)
        ]  # fmt: skip
        try:
            start, end = _day_range(QUEUED_DAY)
            code, out, err, _ = _cli(stack, "trigger", "extract-patterns", "--start", start, "--end", end,
                                     "--no-wait", "--json")  # fmt: skip
            assert code == 0, f"{out}\n{err}"
            report = json.loads(out)
            run_id, audit_id = report["run_id"], report["audit_id"]
            assert report["status"] == "RUNNING"
            time.sleep(15)  # several dequeue passes of the daemon
            run = instance.get_run_by_id(run_id)
            assert run is not None and run.status == dg.DagsterRunStatus.QUEUED, run
            assert run.tags["opx/trigger_type"] == "MANUAL" and run.tags["opx/audit_id"] == audit_id
            record = guard.audit.get(audit_id)
            assert record is not None and record.status.value == "RUNNING" and record.run_id is None
            assert record.results["adoption_run_id"] == run_id  # only this run may adopt it
            guard.kill_switch.disable(admin, "Postgres stack test: a queued manual run must skip")
        finally:
            for placeholder in placeholders:
                instance.delete_run(placeholder)
        try:
            finished = wait_for(lambda: _finished(stack, run_id), 180, "the released manual run", details=stack.logs)
        finally:
            guard.kill_switch.enable(admin)
    assert finished["status"] == "SUCCESS"  # ended gracefully, nothing stored
    record = guard.audit.get(audit_id)
    assert record is not None
    assert (record.status.value, record.skip_reason, record.run_id, record.triggered_by.principal) == (
        "SKIPPED", "KILL_SWITCH_ACTIVE", run_id, "alice",
    )  # fmt: skip
    with stack.server.connect() as conn, conn.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = 'ASSET_MATERIALIZATION'"
            " AND asset_key = %s",
            (run_id, json.dumps(["pattern_summaries_daily"])),
        )
        assert cursor.fetchone()[0] == 0


def test_postgres_killed_run_is_audited_run_terminated_with_an_alert(
    seeded_stack: Stack, killed_run: dict[str, Any]
) -> None:
    stack = seeded_stack

    def terminated() -> AuditRecord | None:
        (record,) = _records_of(stack, killed_run["run_id"])
        return record if record.status.value != "RUNNING" else None

    remaining = killed_run["killed_at"] + RUN_TERMINATED_WITHIN + 10 - time.time()
    record = wait_for(
        terminated,
        max(remaining, 1),
        "the audit sensor to close the killed run's record",
        details=stack.logs,
    )
    assert (record.status.value, record.results.get("failure_reason")) == (
        "FAILED",
        "RUN_TERMINATED",
    )
    assert record.end_time is not None
    closed_after = record.end_time.timestamp() - killed_run["killed_at"]
    print(f"\nkilled run worker: audit record RUN_TERMINATED {closed_after:.0f} s after the SIGKILL")
    assert closed_after <= RUN_TERMINATED_WITHIN

    alerts_file = stack.opx_home / "alerts.jsonl"

    def failure_alert() -> dict[str, Any] | None:
        lines = alerts_file.read_text().splitlines() if alerts_file.exists() else []
        alerts = [json.loads(line) for line in lines]
        found = [a for a in alerts if a["alarm"] == "OPERATION_FAILURE" and a.get("audit_id") == record.audit_id]
        return found[0] if found else None

    raised = wait_for(failure_alert, ALERT_AFTER_TERMINATED, f"the failure alert in {alerts_file}")
    assert (raised["severity"], raised["operation"], raised["run_id"]) == (
        "P2",
        "PATTERN_EXTRACTION",
        killed_run["run_id"],
    )
