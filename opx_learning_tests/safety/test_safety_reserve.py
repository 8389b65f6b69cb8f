"""Guard.reserve: a record waiting for a queued run is adopted by that run only (both backends)."""

from __future__ import annotations

import pytest

from opx_learning.safety.guard import AdoptionRefused
from opx_learning.safety.models import AuditStatus
from opx_learning_tests.safety.conftest import ADMIN, SRE

PARAMS = {"start_date": "2026-01-01", "end_date": "2026-01-02", "time_window": "DAILY"}


def test_a_reserved_record_is_adopted_only_by_its_run(backend) -> None:
    guard = backend.guard()
    attempt = guard.begin("PATTERN_EXTRACTION", "MANUAL", SRE, PARAMS, rate_limited=True, adoptable=True)
    token = attempt.adoption_token
    reserved = guard.reserve(attempt.audit_id, run_id="queued-run", token=token)
    assert reserved.results["adoption_run_id"] == "queued-run" and reserved.run_id is None
    # The token is readable in the queued run's tags: a copy of those tags on another run adopts nothing.
    with pytest.raises(AdoptionRefused, match="reserved for run queued-run"):
        guard.adopt(attempt.audit_id, run_id="copied-tags-run", token=token)
    with pytest.raises(AdoptionRefused, match="taken already by run queued-run"):
        guard.reserve(attempt.audit_id, run_id="other-run", token=token)
    adopted = guard.adopt(attempt.audit_id, run_id="queued-run", token=token, operation_type="PATTERN_EXTRACTION")
    assert adopted.allowed and adopted.principal == SRE
    record = backend.audit.get(attempt.audit_id)
    assert (record.status, record.run_id, record.triggered_by) == (AuditStatus.RUNNING, "queued-run", SRE)


def test_reserve_needs_the_token_and_a_running_record(backend) -> None:
    guard = backend.guard()
    attempt = guard.begin("SNAPSHOT", "MANUAL", ADMIN, {**PARAMS, "snapshot_type": "CUSTOM"}, adoptable=True)
    for token in (None, "", (attempt.adoption_token or "") + "x"):
        with pytest.raises(AdoptionRefused, match="token"):
            guard.reserve(attempt.audit_id, run_id="r", token=token)
    assert "adoption_run_id" not in backend.audit.get(attempt.audit_id).results
    guard.fail(attempt, "ended")
    with pytest.raises(Exception, match="RUNNING|not running|FAILED"):
        guard.reserve(attempt.audit_id, run_id="r", token=attempt.adoption_token)
