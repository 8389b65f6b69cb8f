"""Crash leftovers: RUNNING audit records whose process was killed, closed by the next command that looks.

A `trigger` killed with SIGKILL (or an API worker that died) leaves its audit record RUNNING
and its Dagster run STARTED. The audit sensor closes such records when the daemon runs; so
that no daemon is needed, `opx-learning trigger` and `opx-learning status` call
`close_leftovers` first: a RUNNING record whose run's worker process (same host, its
`opx/pid` tag) is gone is completed FAILED (RUN_TERMINATED), its run is reported failed
through the instance's public API, and the failure alert is raised as the alert sensor would.
A state that cannot be read is left to the guard, which refuses with its own alert.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from opx_learning.config import Settings
from opx_learning.safety.guard import Guard
from opx_learning.safety.models import AuditRecord, BackendUnavailable


def close_leftovers(settings: Settings, instance: Any, guard: Guard) -> list[AuditRecord]:
    """Close the RUNNING records whose worker is gone (FAILED, RUN_TERMINATED), fail their runs, alert; the closed records."""
    from opx_learning.alerts.rules import failure_alert
    from opx_learning.backends import backend_for
    from opx_learning.defs.sensors import complete_terminated, find_run

    # No age threshold: a record is closed only when its worker process is known to be gone.
    try:
        closed = complete_terminated(instance, guard, older_than=timedelta(0))
    except BackendUnavailable:
        # An unreadable or mismatched state is the guard's to refuse (with its alert), not this tidy-up's.
        return []
    if not closed:
        return []
    publisher = backend_for(settings).alert_publisher()
    for record in closed:
        run = find_run(instance, record)
        if run is not None and not run.is_finished:
            instance.report_run_failed(
                run, message=f"the process running it is gone; audit record {record.audit_id} closed FAILED (RUN_TERMINATED)"
            )
        alert = failure_alert(record)
        if alert is not None:
            publisher.publish(alert)
    return closed
