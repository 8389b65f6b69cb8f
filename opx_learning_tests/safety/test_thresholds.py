"""Threshold change requests on both backends: four eyes, versions, the kill switch, races, the audit trail."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from opx_learning.backends import threshold_review_for
from opx_learning.config import get_settings
from opx_learning.core.calibration import calibrate
from opx_learning.core.synthetic import generate_outcomes
from opx_learning.safety.models import (
    AuthorityType,
    InsufficientAuthority,
    InvalidRequest,
    Principal,
)
from opx_learning.safety.thresholds import (
    ApprovalBlocked,
    ProposalNotFound,
    ProposalNotPending,
    ThresholdReview,
)

ADMIN = Principal("ops-admin", AuthorityType.EMERGENCY_OVERRIDE)
ALICE = Principal("alice", AuthorityType.ON_CALL_SRE)
ERIN = Principal("erin", AuthorityType.ON_CALL_SRE)
BOB = Principal("bob", AuthorityType.HUMAN_OPERATOR)
SOURCE = {"asset": "confidence_calibration", "partition": "2026-01-01"}


@pytest.fixture(scope="module")
def january() -> dict[str, Any]:
    """A real calibration of January 2026 (its `to_dict()` form, as the asset stores it)."""
    outcomes = generate_outcomes("2026-01-01", "2026-02-01", per_day=20, seed=3)
    return calibrate(outcomes, "2026-01-01", "2026-02-01").to_dict()


@pytest.fixture(params=["local", "aws"])
def review(request: pytest.FixtureRequest, opx_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ThresholdReview]:
    """The review over the initialised local state, or over DynamoDB tables on moto's HTTP server."""
    if request.param == "aws":
        endpoint = request.getfixturevalue("aws_env")
        monkeypatch.setenv("OPX_BACKEND", "aws")
        from opx_learning.safety.dynamo_backend import create_tables, dynamo_client
        from opx_learning.safety.state import initialise
        from opx_learning_tests.safety.conftest import _atomic_moto_writes

        _atomic_moto_writes(monkeypatch)

        settings = get_settings()
        create_tables(settings, client=dynamo_client(settings.region, endpoint_url=endpoint))
        initialise(settings)
    yield threshold_review_for(get_settings())


def _records(review: ThresholdReview, operation: str) -> list[Any]:
    return review.audit.search(operation_type=operation, limit=50)


def test_four_eyes_approval_makes_the_next_version(review: ThresholdReview, january: dict[str, Any]) -> None:
    proposal = review.propose(ALICE, january, SOURCE)
    assert proposal.status == "PENDING" and proposal.thresholds == january["recommended_thresholds"]
    assert review.current() is None  # nothing changes without an approval
    [proposed] = _records(review, "THRESHOLD_PROPOSAL")
    assert (proposed.status, proposed.results["proposal_id"]) == ("SUCCESS", proposal.proposal_id)

    with pytest.raises(InsufficientAuthority, match="four eyes: alice proposed") as own:
        review.approve(ALICE, proposal.proposal_id)
    with pytest.raises(InsufficientAuthority, match="bob is HUMAN_OPERATOR") as low:
        review.approve(BOB, proposal.proposal_id)
    for refusal in (own.value, low.value):
        record = review.audit.get(refusal.audit_id)
        assert (record.status, record.skip_reason) == ("SKIPPED", "INSUFFICIENT_AUTHORITY")
    assert review.current() is None and review.get(proposal.proposal_id).status == "PENDING"

    approval = review.approve(ERIN, proposal.proposal_id)
    current = review.current()
    assert (current.version, current.approved_by, current.proposed_by) == (1, ERIN, ALICE)
    assert current.thresholds == january["recommended_thresholds"]
    decided = review.get(proposal.proposal_id)
    assert (decided.status, decided.approver, decided.version) == ("APPROVED", ERIN, 1)
    approved = review.audit.get(approval.audit_id)
    assert (approved.operation_type, approved.status, approved.results["version"]) == ("THRESHOLD_APPROVAL", "SUCCESS", 1)

    with pytest.raises(ProposalNotPending, match="approved by erin as version 1 already") as again:
        review.approve(ADMIN, proposal.proposal_id)
    assert review.audit.get(again.value.audit_id).skip_reason == "PROPOSAL_NOT_PENDING"

    # A second proposal, approved by an EMERGENCY_OVERRIDE principal, becomes version 2.
    changed = {**january, "recommended_thresholds": {"0.2": 0.15, "0.4": 0.35, "0.6": 0.62, "0.8": None}}
    second = review.propose(ERIN, changed, SOURCE)
    assert second.base_version == 1
    review.approve(ADMIN, second.proposal_id)
    assert [(s.version, s.approved_by.principal) for s in review.history()] == [(1, "erin"), (2, "ops-admin")]
    assert review.current().thresholds == changed["recommended_thresholds"]


def test_rejection_needs_a_reason_and_another_principal(review: ThresholdReview, january: dict[str, Any]) -> None:
    proposal = review.propose(ALICE, january, SOURCE)
    with pytest.raises(InvalidRequest, match="reason: a reason is required"):
        review.reject(ERIN, proposal.proposal_id, "  ")
    with pytest.raises(InsufficientAuthority, match="cannot reject it"):
        review.reject(ALICE, proposal.proposal_id, "changed my mind")
    rejected = review.reject(ERIN, proposal.proposal_id, "January was an outage month")
    assert (rejected.status, rejected.reason, rejected.approver) == ("REJECTED", "January was an outage month", None)
    with pytest.raises(ProposalNotPending, match="was rejected by erin already"):
        review.approve(ADMIN, proposal.proposal_id)
    assert review.current() is None
    assert [r.status for r in _records(review, "THRESHOLD_REJECTION")] == ["SUCCESS", "SKIPPED"]  # newest first
    with pytest.raises(ProposalNotFound, match="no threshold proposal 'tp-nothing'"):
        review.approve(ERIN, "tp-nothing")


def test_kill_switch_blocks_approvals(review: ThresholdReview, january: dict[str, Any]) -> None:
    proposal = review.propose(ALICE, january, SOURCE)
    review.kill_switch.disable(ADMIN, "incident")
    try:
        for who in (ERIN, ADMIN):
            with pytest.raises(ApprovalBlocked, match="KILL_SWITCH_ACTIVE") as blocked:
                review.approve(who, proposal.proposal_id)
            record = review.audit.get(blocked.value.audit_id)
            assert (record.status, record.skip_reason) == ("SKIPPED", "KILL_SWITCH_ACTIVE")
        assert review.current() is None and review.get(proposal.proposal_id).status == "PENDING"
    finally:
        review.kill_switch.enable(ADMIN)
    assert review.approve(ERIN, proposal.proposal_id).current.version == 1


def test_two_concurrent_approvals_cannot_both_win(review: ThresholdReview, january: dict[str, Any]) -> None:
    proposal = review.propose(ALICE, january, SOURCE)
    approvers = [Principal(f"sre-{i}", AuthorityType.ON_CALL_SRE) for i in range(6)]
    won: list[int] = []
    lost: list[str] = []
    barrier = threading.Barrier(len(approvers))

    def approve(who: Principal) -> None:
        mine = threshold_review_for(get_settings())
        barrier.wait()
        try:
            won.append(mine.approve(who, proposal.proposal_id).current.version)
        except ProposalNotPending as error:
            lost.append(error.audit_id or "")

    threads = [threading.Thread(target=approve, args=(who,)) for who in approvers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert won == [1] and len(lost) == len(approvers) - 1
    assert [s.version for s in review.history()] == [1]
    outcomes = sorted(r.status.value for r in _records(review, "THRESHOLD_APPROVAL"))
    assert outcomes == ["SKIPPED"] * (len(approvers) - 1) + ["SUCCESS"]


def test_a_calibration_without_thresholds_is_refused(review: ThresholdReview, january: dict[str, Any]) -> None:
    empty = {**january, "recommended_thresholds": {"0.2": None, "0.4": None, "0.6": None, "0.8": None}}
    with pytest.raises(InvalidRequest, match="every threshold of calibration .* is null"):
        review.propose(ALICE, empty, SOURCE)
    with pytest.raises(InvalidRequest, match=r"0.8 = 1.5 .* is not in \[0, 1\]"):
        review.propose(ALICE, {**january, "recommended_thresholds": {"0.8": 1.5}}, SOURCE)
    assert review.proposals() == [] and _records(review, "THRESHOLD_PROPOSAL") == []
