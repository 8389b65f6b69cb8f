"""Backend factories and worker functions importable by spawned test processes."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from opx_learning.config import get_settings
from opx_learning.safety.guard import Guard
from opx_learning.safety.maintenance import MaintenanceCalendar
from opx_learning.safety.models import Principal

BackendSpec = tuple[str, str]


def open_stores(spec: BackendSpec) -> tuple[Any, Any, Any]:
    """The three stores of a backend spec: ("sqlite", path) or ("dynamo", endpoint)."""
    kind, where = spec
    if kind == "sqlite":
        from opx_learning.safety.sqlite_backend import open_sqlite

        return open_sqlite(Path(where))
    from opx_learning.safety.dynamo_backend import dynamo_client, open_dynamo

    settings = get_settings()
    return open_dynamo(settings, client=dynamo_client(settings.region, endpoint_url=where))


def make_guard(spec: BackendSpec, **kwargs: Any) -> Guard:
    """A guard over the spec's stores with an empty maintenance calendar."""
    kwargs.setdefault("calendar", MaintenanceCalendar([]))
    return Guard(*open_stores(spec), **kwargs)


def fire_triggers(spec: BackendSpec, principal: Principal, threads: int, barrier: Any, out: Any = None) -> list[bool]:
    """Fire `threads` manual CALIBRATION triggers at once after `barrier`; returns (and puts on `out`) who was allowed."""
    guard = make_guard(spec)
    guard.kill_switch.status()
    results: list[bool] = []
    lock = threading.Lock()
    go = threading.Event()

    def one() -> None:
        go.wait()
        attempt = guard.begin("CALIBRATION", "MANUAL", principal, {"start_date": "2026-01-01", "end_date": "2026-02-01"},
                              rate_limited=True)
        with lock:
            results.append(attempt.allowed)

    workers = [threading.Thread(target=one) for _ in range(threads)]
    for worker in workers:
        worker.start()
    barrier.wait()
    go.set()
    for worker in workers:
        worker.join()
    if out is not None:
        out.put(results)
    return results


def begin_scheduled(spec: BackendSpec) -> tuple[bool, str | None, float]:
    """Begin one scheduled PATTERN_EXTRACTION; returns (allowed, skip reason, wall time of the decision)."""
    os.environ.setdefault("OPX_BACKEND", "local")
    from opx_learning.safety.models import SYSTEM

    attempt = make_guard(spec).begin("PATTERN_EXTRACTION", "SCHEDULED", SYSTEM, {"time_window": "DAILY"})
    return attempt.allowed, attempt.skip_reason.value if attempt.skip_reason else None, time.time()
