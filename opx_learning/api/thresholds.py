"""REST routes of threshold change requests (docs/thresholds.md): the current approved set, proposals, decisions.

- `GET /learning/thresholds`: the current approved set (`version`, `thresholds`, `approver`, …),
  404 `NOT_FOUND` before the first approval;
- `GET /learning/thresholds/proposals`: every proposal, oldest first;
- `POST /learning/thresholds/proposals/{id}/approve` (no body) and `/reject` (`{"reason": …}`):
  the rules of `opx-learning thresholds approve|reject` — 403 `INSUFFICIENT_AUTHORITY` for a
  principal below ON_CALL_SRE or the proposer, 409 `PROPOSAL_NOT_PENDING`, 503
  `KILL_SWITCH_ACTIVE` / `KILL_SWITCH_UNAVAILABLE` for approvals while the kill switch blocks;
  refusals carry the `auditId` of their audit record.

Every route authenticates like the rest of the API (bearer token or the trusted gateway header).
"""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from opx_learning.api.auth import Unauthenticated, authenticate
from opx_learning.backends import threshold_review_for
from opx_learning.config import Settings
from opx_learning.safety.models import (
    BackendUnavailable,
    InsufficientAuthority,
    InvalidRequest,
    Principal,
    SkipReason,
)
from opx_learning.safety.principals import PrincipalsFileError
from opx_learning.safety.thresholds import (
    ApprovalBlocked,
    ProposalNotFound,
    ProposalNotPending,
    ThresholdReview,
)

_ERRORS: dict[int | str, dict[str, Any]] = {code: {"description": name} for code, name in (
    (400, "invalid body"), (401, "unauthenticated"), (403, "insufficient authority or own proposal"),
    (404, "unknown proposal"), (409, "proposal not PENDING"), (503, "kill switch active or state unavailable"))}


class RejectRequest(BaseModel):
    """Body of a rejection."""

    model_config = ConfigDict(extra="forbid")
    reason: str = Field(description="Why the proposal is rejected (1..1000 characters).")


def _error(status: int, error: str, message: str, audit_id: str | None = None, store: str | None = None,
           headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": error, "message": message}
    if audit_id:
        body["auditId"] = audit_id
    if store:
        body["store"] = store
    return JSONResponse(body, status_code=status, headers=headers)


def thresholds_router(settings: Settings, trusted_header: str | None = None) -> APIRouter:
    """The threshold routes over `settings`, authenticating as `create_app` does.

    Args:
        settings: backend settings (store, principals file).
        trusted_header: the trusted gateway identity header, if any.
    """
    router = APIRouter(tags=["thresholds"])
    bearer = HTTPBearer(auto_error=False, description="Token whose SHA-256 is the principal's token_sha256.")
    store = settings.store_description

    def caller(request: Request) -> Principal | JSONResponse:
        try:
            return authenticate(request.headers, settings, trusted_header)
        except Unauthenticated as error:
            return _error(401, "UNAUTHENTICATED", str(error), headers={"WWW-Authenticate": "Bearer"})
        except PrincipalsFileError as error:
            return _error(500, "PRINCIPALS_FILE_INVALID", str(error))

    def decide(request: Request, action: Any) -> Any:
        who = caller(request)
        if isinstance(who, JSONResponse):
            return who
        try:
            return action(threshold_review_for(settings), who)
        except InvalidRequest as error:
            return _error(400, "INVALID_REQUEST", str(error))
        except ProposalNotFound as error:
            return _error(404, "NOT_FOUND", str(error))
        except InsufficientAuthority as error:
            return _error(403, "INSUFFICIENT_AUTHORITY", str(error), error.audit_id, store)
        except ProposalNotPending as error:
            return _error(409, "PROPOSAL_NOT_PENDING", str(error), error.audit_id, store)
        except ApprovalBlocked as error:
            return _error(503, error.reason.value, str(error), error.audit_id, store)
        except BackendUnavailable as error:
            return _error(503, SkipReason.STATE_UNAVAILABLE.value, str(error), store=store)

    @router.get("/learning/thresholds", responses=_ERRORS, summary="The current approved thresholds")
    def current(request: Request, _: Annotated[Any, Depends(bearer)] = None) -> Any:
        """The current approved set: version, thresholds, approver, proposer, calibration; 404 before the first."""

        def read(review: ThresholdReview, _: Principal) -> Any:
            found = review.current()
            if found is None:
                return _error(404, "NOT_FOUND", "no thresholds have been approved yet (see /learning/thresholds/"
                              "proposals)", store=store)
            return {**found.to_rest(), "store": store}

        return decide(request, read)

    @router.get("/learning/thresholds/proposals", responses=_ERRORS, summary="Every threshold proposal")
    def proposals(request: Request, _: Annotated[Any, Depends(bearer)] = None) -> Any:
        """Every proposal, oldest first (id, status, proposer, approver, thresholds, version, …)."""
        return decide(request, lambda review, _: [p.to_dict() for p in review.proposals()])

    @router.post("/learning/thresholds/proposals/{proposal_id}/approve", responses=_ERRORS,
                 summary="Approve a proposal (ON_CALL_SRE / EMERGENCY_OVERRIDE, not its proposer)")
    def approve(proposal_id: str, request: Request, _: Annotated[Any, Depends(bearer)] = None) -> Any:
        """Make a PENDING proposal the next approved version; blocked while the kill switch is active."""

        def run(review: ThresholdReview, who: Principal) -> Any:
            done = review.approve(who, proposal_id)
            return {"status": "APPROVED", "auditId": done.audit_id,
                    "message": f"{proposal_id} approved as thresholds version {done.current.version}",
                    "proposal": done.proposal.to_dict(), "current": done.current.to_rest(), "store": store}

        return decide(request, run)

    @router.post("/learning/thresholds/proposals/{proposal_id}/reject", responses=_ERRORS,
                 summary="Reject a proposal with a reason (ON_CALL_SRE / EMERGENCY_OVERRIDE, not its proposer)")
    def reject(proposal_id: str, body: RejectRequest, request: Request,
               _: Annotated[Any, Depends(bearer)] = None) -> Any:
        """Reject a PENDING proposal; no threshold changes."""

        def run(review: ThresholdReview, who: Principal) -> Any:
            done = review.reject(who, proposal_id, body.reason)
            return {"status": "REJECTED", "auditId": done.decision_audit_id,
                    "message": f"{proposal_id} rejected: {done.reason}", "proposal": done.to_dict(), "store": store}

        return decide(request, run)

    return router


__all__ = ["RejectRequest", "thresholds_router"]
