"""`python -m opx_learning.api.worker PAYLOAD`: run one accepted REST trigger (see `runner.py`).

PAYLOAD is JSON `{plan, audit_id, principal}`; the attempt's adoption token comes in
`OPX_ADOPTION_TOKEN`. The run adopts the audit record with it, so the record ends
SUCCESS / FAILED / SKIPPED as the run decides. Exit code 0 once the record is complete.
"""

from __future__ import annotations

import json
import os
import sys

from opx_learning.cli.orchestration import ManualPlan, fail_running, launch_manual
from opx_learning.safety.guard import Guard


def main(argv: list[str] | None = None) -> int:
    """Run the payload's plan; on an unexpected error complete the record as FAILED and return 1."""
    payload = json.loads((argv if argv is not None else sys.argv[1:])[0])
    audit_id = payload["audit_id"]
    try:
        token = os.environ.pop("OPX_ADOPTION_TOKEN", "")
        summary, record = launch_manual(ManualPlan.from_dict(payload["plan"]), audit_id, token)
    except Exception as error:
        fail_running(Guard.from_settings(), audit_id, f"{type(error).__name__}: {error}")
        raise
    status = record.status.value if record is not None else None
    print(json.dumps({"audit_id": audit_id, "status": status, "run": summary.to_dict()}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
