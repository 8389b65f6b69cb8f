"""Concurrency proofs and disable-to-effect latency, with threads and processes (both backends)."""

from __future__ import annotations

import multiprocessing
import threading
import time

from opx_learning.safety.guard import Guard
from opx_learning.safety.maintenance import MaintenanceCalendar
from opx_learning.safety.models import SYSTEM, AuditStatus, BackendUnavailable
from opx_learning_tests.safety.conftest import ADMIN, SRE
from opx_learning_tests.safety.safety_workers import begin_scheduled, fire_triggers

PROCESSES, THREADS_PER_PROCESS, IN_PARENT = 4, 10, 10  # 50 concurrent triggers in all


def test_fifty_concurrent_calibration_triggers_accept_exactly_three(backend) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES + 1)
    out = ctx.Queue()
    workers = [
        ctx.Process(target=fire_triggers, args=(backend.spec, SRE, THREADS_PER_PROCESS, barrier, out))
        for _ in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    local = fire_triggers(backend.spec, SRE, IN_PARENT, barrier)
    decisions = local + [allowed for _ in workers for allowed in out.get(timeout=60)]
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0

    assert len(decisions) == 50 and sum(decisions) == 3
    records = backend.audit.by_operation("CALIBRATION", limit=None)
    assert len(records) == 50
    assert sum(r.status is AuditStatus.RUNNING for r in records) == 3
    refused = [r for r in records if r.status is AuditStatus.SKIPPED]
    assert len(refused) == 47 and {r.results["skip_reason"] for r in refused} == {"RATE_LIMIT_EXCEEDED"}
    assert backend.rate_limiter.peek(SRE, "CALIBRATION").remaining == 0


def test_rate_limiter_threads_exactly_limit(backend) -> None:
    results: list[bool] = []
    barrier = threading.Barrier(50)

    def one() -> None:
        barrier.wait()
        results.append(backend.rate_limiter.acquire("carol", "PATTERN_EXTRACTION").allowed)

    threads = [threading.Thread(target=one) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(results) == 5


def test_disable_takes_effect_at_next_operation_start_in_another_process(backend) -> None:
    guard = backend.guard()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        assert pool.apply(begin_scheduled, (backend.spec,))[:2] == (True, None)  # warm process, switch inactive
        disabled_at = time.time()
        guard.kill_switch.disable(ADMIN, "latency probe")
        allowed, reason, decided_at = pool.apply(begin_scheduled, (backend.spec,))
    latency = decided_at - disabled_at
    assert (allowed, reason) == (False, "KILL_SWITCH_ACTIVE")
    print(f"disable-to-effect ({backend.name}): {latency * 1000:.0f} ms")
    assert latency < 30


def test_sqlite_corrupt_file_fails_closed(tmp_path) -> None:
    from opx_learning.safety.sqlite_backend import open_sqlite

    path = tmp_path / "state.db"
    path.write_bytes(b"this is not a database" * 100)
    alerts: list[tuple] = []
    guard = Guard(*open_sqlite(path, timeout=0.2), calendar=MaintenanceCalendar([]),
                  on_alert=lambda *alert: alerts.append(alert))
    attempt = guard.begin("CALIBRATION", "SCHEDULED", SYSTEM)
    assert not attempt.allowed and attempt.skip_reason == "KILL_SWITCH_UNAVAILABLE" and not attempt.audited
    assert {a[:2] for a in alerts} == {("P1", "KILL_SWITCH_UNAVAILABLE"), ("P1", "STATE_UNAVAILABLE")}
    # even an emergency run does not start without its audit record
    emergency = guard.begin("CALIBRATION", "MANUAL", ADMIN, emergency=True)
    assert not emergency.allowed and emergency.skip_reason == "STATE_UNAVAILABLE"


def test_sqlite_locked_beyond_timeout_fails_closed(opx_home) -> None:
    import sqlite3

    from opx_learning.safety.sqlite_backend import open_sqlite

    path = opx_home / "state.db"
    stores = open_sqlite(path, timeout=0.2)
    assert stores[1].read().enabled
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA journal_mode = DELETE")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        attempt = Guard(*open_sqlite(path, timeout=0.2), calendar=MaintenanceCalendar([]),
                        on_alert=lambda *a: None).begin("SNAPSHOT", "SCHEDULED", SYSTEM)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert not attempt.allowed and attempt.skip_reason == "KILL_SWITCH_UNAVAILABLE"


def test_dynamo_unreachable_fails_closed(aws_env) -> None:
    from opx_learning.config import get_settings
    from opx_learning.safety.dynamo_backend import dynamo_client, open_dynamo
    from opx_learning_tests.conftest import _free_port

    client = dynamo_client("us-east-1", endpoint_url=f"http://127.0.0.1:{_free_port()}", max_attempts=1,
                           connect_timeout=0.5, read_timeout=0.5)
    audit, switch, limiter = open_dynamo(get_settings(), client=client)
    try:
        switch.read()
        raise AssertionError("read must fail")
    except BackendUnavailable:
        pass
    alerts: list[tuple] = []
    attempt = Guard(audit, switch, limiter, calendar=MaintenanceCalendar([]),
                    on_alert=lambda *a: alerts.append(a)).begin("PATTERN_EXTRACTION", "SCHEDULED", SYSTEM)
    assert not attempt.allowed and attempt.skip_reason == "KILL_SWITCH_UNAVAILABLE"
    assert ("P1", "KILL_SWITCH_UNAVAILABLE") in {a[:2] for a in alerts}
