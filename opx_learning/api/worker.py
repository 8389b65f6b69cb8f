"""`python -m opx_learning.api.worker PAYLOAD`: run one accepted REST trigger (see `runner.py`).

PAYLOAD is JSON `{plan, audit_id, principal}`; the attempt's adoption token comes in
`OPX_ADOPTION_TOKEN`. The run adopts the audit record with it, so the record ends
SUCCESS / FAILED / SKIPPED as the run decides. Exit code 0 once the record is complete.
The worker is an entry point of its own: its settings are the `OPX_*` variables the REST
app set for it (`runner.settings_env`), read once with `Settings.from_env()`.

A record already completed when the worker starts (e.g. closed as RUN_TERMINATED while the
request waited in the queue) is not run: the worker says so in its log, raises a P2
`REQUEST_NOT_RUN` alert naming the record, and exits with `NOT_RUN_EXIT`.
"""

from __future__ import annotations

import json
import logging
import os
import sys

from opx_learning.app.manual import ManualPlan, fail_running, launch_manual
from opx_learning.backends import guard_for
from opx_learning.config import Settings
from opx_learning.safety.guard import Guard
from opx_learning.safety.models import AuditRecord, AuditStatus

NOT_RUN_EXIT = 3
REQUEST_NOT_RUN = "REQUEST_NOT_RUN"
_log = logging.getLogger("opx_learning.api")


def main(argv: list[str] | None = None) -> int:
    """Run the payload's plan; on an unexpected error complete the record as FAILED and return 1."""
    payload = json.loads((argv if argv is not None else sys.argv[1:])[0])
    audit_id = payload["audit_id"]
    settings = Settings.from_env()
    guard = guard_for(settings)
    record = guard.audit.get(audit_id)
    if record is None or record.status is not AuditStatus.RUNNING:
        return _not_run(guard, audit_id, record)
    try:
        token = os.environ.pop("OPX_ADOPTION_TOKEN", "")
        summary, record = launch_manual(ManualPlan.from_dict(payload["plan"]), audit_id, token, guard=guard,
                                        settings=settings)
    except Exception as error:
        fail_running(guard, audit_id, f"{type(error).__name__}: {error}")
        raise
    status = record.status.value if record is not None else None
    print(json.dumps({"audit_id": audit_id, "status": status, "run": summary.to_dict()}, default=str))
    return 0


def _not_run(guard: Guard, audit_id: str, record: AuditRecord | None) -> int:
    """Report a request whose record was completed (or lost) before its worker started; nothing is launched."""
    status = record.status.value if record is not None else None
    why = (
        f"its audit record is {status} ({record.error_message or record.results})"
        if record is not None
        else "its audit record does not exist"
    )
    message = f"the REST request {audit_id} was not run: {why}; trigger it again if it is still needed"
    print(json.dumps({"audit_id": audit_id, "status": status, "run": None, "error": message}, default=str))
    _log.error(message)
    details = {"audit_id": audit_id, "status": status, "message": message}
    if record is not None:
        details |= {"operation": record.operation_type.value, "trigger_type": record.trigger_type.value,
                    "principal": record.triggered_by.principal}
    guard.on_alert("P2", REQUEST_NOT_RUN, details)
    return NOT_RUN_EXIT


if __name__ == "__main__":
    sys.exit(main())
