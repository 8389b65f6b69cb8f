"""The FastAPI application: `create_app(settings=None)`.

Manual triggers are checked and mapped onto partitions by the same code as
`opx-learning trigger` (`plan_manual`), decided by the safety guard (kill switch, rate
limit, audit record written before the work) and answered 202 at once; the run executes in
a background worker process, or on an instance that queues runs in a run worker started by
the daemon (`runner.py`), and completes the audit record. Poll
`GET /learning/audit/{auditId}` (the `#` of an audit id URL-encoded as `%23`) for the outcome.
"""

import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from opx_learning.api.auth import Unauthenticated, authenticate
from opx_learning.api.models import (
    CalibrateRequest,
    CreateSnapshotRequest,
    DisableRequest,
    EnableRequest,
    ErrorResponse,
    ExtractPatternsRequest,
    HealthResponse,
    KillSwitchChangeResponse,
    KillSwitchStatusResponse,
    TriggerAccepted,
)
from opx_learning.api.runner import BackgroundRuns
from opx_learning.api.thresholds import thresholds_router
from opx_learning.app.instance import ensure_dagster_home
from opx_learning.app.manual import ManualPlan, fail_running, plan_manual
from opx_learning.backends import guard_for
from opx_learning.config import Settings
from opx_learning.safety.chain import StateMismatch
from opx_learning.safety.guard import Attempt, Guard
from opx_learning.safety.home import home_problem, raise_alert
from opx_learning.safety.models import (
    BackendUnavailable,
    InsufficientAuthority,
    InvalidRequest,
    KillSwitchUnavailable,
    OperationType,
    Principal,
    SkipReason,
)
from opx_learning.safety.principals import PrincipalsFileError
from opx_learning.safety.rate_limit import DEFAULT_LIMITS

_STATUS_NAMES = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 415: "UNSUPPORTED_MEDIA_TYPE"}
_ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 403, 429, 503)}
_CHANGE_ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 403, 503)}  # endpoints without rate limits


class ApiError(Exception):
    """An error answered as `{error, message[, auditId]}` with a status code and headers."""

    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        *,
        audit_id: str | None = None,
        headers: dict[str, str] | None = None,
        store: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.error, self.message, self.audit_id, self.headers = status, error, message, audit_id, headers
        self.store = store

    def response(self) -> JSONResponse:
        """The JSON error response."""
        body: dict[str, Any] = {"error": self.error, "message": self.message}
        if self.audit_id:
            body["auditId"] = self.audit_id
        if self.store:
            body["store"] = self.store
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def validation_message(errors: list[Any]) -> str:
    """One sentence naming each invalid body field and its value, from pydantic's error list."""
    parts = []
    for error in errors:
        location = [str(part) for part in error.get("loc", ()) if part != "body"]
        kind = error.get("type", "")
        if kind == "json_invalid":
            parts.append(f"body: not valid JSON ({error.get('ctx', {}).get('error', error.get('msg'))})")
            continue
        field = ".".join(location) or "body"
        if kind == "missing":
            parts.append(f"{field}: required" if location else "body: a JSON object is required")
        elif kind == "extra_forbidden":
            parts.append(f"{field}: {error.get('input')!r} is not accepted (unknown field)")
        else:
            parts.append(f"{field}: {error.get('input')!r} is invalid ({error.get('msg')})")
    return "; ".join(parts) or "invalid request"


def create_app(settings: Settings | None = None, *, trusted_identity_header: str | None = None) -> FastAPI:
    """Build the REST API over `settings` (default: `Settings.from_env()`, as `uvicorn --factory` calls it).

    The app factory is an entry point: it is the one place of the REST API that reads the
    process environment (the settings, and the environment its worker processes inherit).

    Args:
        settings: backend settings (OPX_HOME, principals file, ...).
        trusted_identity_header: identity header set by a trusted gateway (default:
            `settings.trusted_identity_header`, `OPX_TRUSTED_IDENTITY_HEADER`; unset = only bearer tokens
            authenticate).
    """
    settings = settings if settings is not None else Settings.from_env()
    store = settings.store_description
    trusted = trusted_identity_header or settings.trusted_identity_header
    # The runs this process submits to a queue start `dagster job launch`, which finds the instance by DAGSTER_HOME.
    os.environ["DAGSTER_HOME"] = str(settings.dagster_home_dir)
    ensure_dagster_home(settings)
    runs = BackgroundRuns(settings, environ=os.environ)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        runs.stop()

    app = FastAPI(
        title="opx_learning REST API",
        version="1.0.0",
        description=(
            "Manual triggers, kill switch and audit trail of the learning operations (runbook paths and bodies). "
            "Authenticate with `Authorization: Bearer <token>` (token_sha256 in the principals file)"
            + (f" or through the gateway's `{trusted}` header." if trusted else ".")
        ),
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.runs = runs
    bearer = HTTPBearer(auto_error=False, description="Token whose SHA-256 is the principal's token_sha256.")

    @app.exception_handler(ApiError)
    async def api_error(_: Request, error: ApiError) -> JSONResponse:
        return error.response()

    @app.exception_handler(InvalidRequest)
    async def invalid_configuration(_: Request, error: InvalidRequest) -> JSONResponse:
        # Request mistakes are mapped to 400 where they are caught; what reaches here is the server's settings.
        return ApiError(500, "INVALID_CONFIGURATION", str(error)).response()

    @app.exception_handler(OSError)
    async def file_error(_: Request, error: OSError) -> JSONResponse:
        # A file under the home that cannot be used: 503 with the reason and a P1, never a 500.
        problem = home_problem(settings, error)
        if problem is None:
            return ApiError(500, "FILE_ERROR", f"{type(error).__name__}: {error}").response()
        raise_alert(settings, problem, command="REST API")
        return ApiError(503, problem.reason, problem.message, store=store).response()

    @app.exception_handler(RequestValidationError)
    async def invalid_body(_: Request, error: RequestValidationError) -> JSONResponse:
        return ApiError(400, "INVALID_REQUEST", validation_message(list(error.errors()))).response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_NAMES.get(error.status_code, "HTTP_ERROR")
        return JSONResponse({"error": code, "message": str(error.detail)}, status_code=error.status_code,
                            headers=getattr(error, "headers", None))

    def principal(request: Request, _: Annotated[Any, Depends(bearer)] = None) -> Principal:
        try:
            return authenticate(request.headers, settings, trusted)
        except Unauthenticated as error:
            raise ApiError(401, "UNAUTHENTICATED", str(error), headers={"WWW-Authenticate": "Bearer"}) from None
        except PrincipalsFileError as error:
            raise ApiError(500, "PRINCIPALS_FILE_INVALID", str(error)) from None

    Caller = Annotated[Principal, Depends(principal)]

    def guard() -> Guard:
        return guard_for(settings)

    def accept(command: str, caller: Principal, body: Any, kind: str | None, fields: dict[str, str],
               service: str | None = None) -> JSONResponse:
        try:
            plan = plan_manual(command, body.startDate, body.endDate, kind=kind, service=service, fields=fields,
                               settings=settings)
        except InvalidRequest as error:
            raise ApiError(400, "INVALID_REQUEST", str(error)) from None
        safety = guard()
        try:
            attempt = safety.begin(plan.operation, "MANUAL", caller, plan.parameters, emergency=body.emergency,
                                   rate_limited=True, adoptable=True)
        except InvalidRequest as error:
            raise ApiError(400, "INVALID_REQUEST", str(error)) from None
        if not attempt.allowed:
            raise refusal(attempt, body.emergency)
        try:
            runs.submit(plan, attempt.audit_id, caller.principal, attempt.adoption_token or "")
        except RuntimeError as error:  # no thread could be started
            fail_running(safety, attempt.audit_id, f"cannot queue the background run: {error}")
            raise ApiError(503, "RUN_NOT_STARTED", f"the run could not be started: {error}",
                           audit_id=attempt.audit_id) from None
        return JSONResponse(accepted(plan, attempt).model_dump(exclude_none=True), status_code=202,
                            headers={**rate_headers(attempt), "Location": status_url(attempt.audit_id)})

    @app.post("/learning/extract-patterns", status_code=202, response_model=TriggerAccepted, responses=_ERRORS,
              tags=["triggers"], summary=f"Manual pattern extraction ({DEFAULT_LIMITS[OperationType.PATTERN_EXTRACTION]} per hour per principal)")
    def extract_patterns(body: ExtractPatternsRequest, caller: Caller) -> JSONResponse:
        """Extract patterns over the window: daily partitions for whole days, else one custom window."""
        fields = {"start": "startDate", "end": "endDate", "service": "service", "type": "timeWindow"}
        return accept("extract-patterns", caller, body, body.timeWindow, fields, body.service)

    @app.post("/learning/calibrate", status_code=202, response_model=TriggerAccepted, responses=_ERRORS,
              tags=["triggers"], summary=f"Manual calibration ({DEFAULT_LIMITS[OperationType.CALIBRATION]} per hour per principal)")
    def calibrate(body: CalibrateRequest, caller: Caller) -> JSONResponse:
        """Calibrate over the window: calendar months (with drift metrics) when whole, else one custom window."""
        fields = {"start": "startDate", "end": "endDate", "service": "service", "type": "timeWindow"}
        return accept("calibrate", caller, body, body.timeWindow, fields)

    @app.post("/learning/create-snapshot", status_code=202, response_model=TriggerAccepted, responses=_ERRORS,
              tags=["triggers"], summary=f"Manual snapshot ({DEFAULT_LIMITS[OperationType.SNAPSHOT]} per hour per principal)")
    def create_snapshot(body: CreateSnapshotRequest, caller: Caller) -> JSONResponse:
        """Snapshot the window: one custom window, or whole daily / weekly / monthly partitions."""
        fields = {"start": "startDate", "end": "endDate", "service": "service", "type": "snapshotType",
                  "extract": 'POST /learning/extract-patterns with "timeWindow": "{kind}"'}
        return accept("snapshot", caller, body, body.snapshotType, fields)

    @app.post("/learning/kill-switch/disable", response_model=KillSwitchChangeResponse, responses=_CHANGE_ERRORS,
              tags=["kill switch"], summary="Block all learning operations (EMERGENCY_OVERRIDE only)")
    def disable(caller: Caller, body: DisableRequest | None = None) -> dict[str, Any]:
        """Activate the kill switch with a reason (optionally until a planned time)."""
        body = body or DisableRequest()
        return change(lambda safety: safety.kill_switch.disable(caller, body.reason, until=body.until))

    @app.post("/learning/kill-switch/enable", response_model=KillSwitchChangeResponse, responses=_CHANGE_ERRORS,
              tags=["kill switch"], summary="Allow learning operations again (EMERGENCY_OVERRIDE only)")
    def enable(caller: Caller, _: EnableRequest | None = None) -> dict[str, Any]:
        """Deactivate the kill switch (no body, or an empty JSON object)."""
        return change(lambda safety: safety.kill_switch.enable(caller))

    @app.get("/learning/kill-switch/status", response_model=KillSwitchStatusResponse, response_model_exclude_unset=True,
             responses={503: {"model": ErrorResponse}}, tags=["kill switch"], summary="Kill-switch state (no auth)")
    def status() -> dict[str, Any]:
        """The current kill-switch state, read fresh from the store."""
        try:
            return {**guard().kill_switch.status().to_rest(), "store": store}
        except StateMismatch as error:
            raise ApiError(503, SkipReason.STATE_MISMATCH.value,
                           f"the kill switch state disagrees with its anchor or audit trail ({error}); "
                           "non-emergency work is skipped", store=store) from None
        except KillSwitchUnavailable as error:
            raise ApiError(503, SkipReason.KILL_SWITCH_UNAVAILABLE.value,
                           f"the kill switch state cannot be read ({error}); non-emergency work is skipped",
                           store=store) from None

    @app.get("/learning/audit/{audit_id:path}", responses={**_CHANGE_ERRORS, 404: {"model": ErrorResponse}},
             tags=["audit"], summary="One audit record (the fields of `audit get --json`)")
    def audit(audit_id: str, _: Caller) -> dict[str, Any]:
        """The audit record with this id (`#` URL-encoded as `%23`), with the snake_case fields of `audit get --json`."""
        try:
            record = guard().audit.get(audit_id)
        except BackendUnavailable as error:
            raise ApiError(503, SkipReason.STATE_UNAVAILABLE.value, str(error)) from None
        if record is None:
            raise ApiError(404, "NOT_FOUND", f"auditId: {audit_id!r} matches no audit record "
                           "(URL-encode the '#' as %23)")
        return record.to_dict()

    @app.get("/health", response_model=HealthResponse, tags=["service"], summary="Liveness (no auth)")
    def health() -> dict[str, Any]:
        """The server is up; background run counts."""
        return {"status": "ok", "backend": settings.backend, "runs": runs.counts(), "store": store}

    def change(action: Callable[[Guard], Any]) -> dict[str, Any]:
        try:
            return {**action(guard()).to_rest(), "store": store}
        except InvalidRequest as error:
            raise ApiError(400, "INVALID_REQUEST", str(error)) from None
        except InsufficientAuthority as error:
            raise ApiError(403, "INSUFFICIENT_AUTHORITY", str(error), audit_id=error.audit_id, store=store) from None
        except BackendUnavailable as error:
            raise ApiError(503, SkipReason.STATE_UNAVAILABLE.value, f"the kill switch could not be changed: {error}",
                           store=store) from None

    def openapi() -> dict[str, Any]:
        """The OpenAPI document without FastAPI's default 422: invalid bodies are answered 400."""
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            for path in schema.get("paths", {}).values():
                for operation in path.values():
                    operation.get("responses", {}).pop("422", None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.include_router(thresholds_router(settings, trusted))
    app.openapi = openapi  # type: ignore[method-assign]
    return app


def status_url(audit_id: str) -> str:
    """`/learning/audit/<id>` with the id URL-encoded."""
    return f"/learning/audit/{quote(audit_id, safe='')}"


def rate_headers(attempt: Attempt) -> dict[str, str]:
    """`X-RateLimit-*` (and `Retry-After` on refusal) headers of a rate-limited attempt."""
    return attempt.rate_limit.headers() if attempt.rate_limit is not None else {}


def accepted(plan: ManualPlan, attempt: Attempt) -> TriggerAccepted:
    """The 202 body of an allowed attempt."""
    return TriggerAccepted(
        auditId=attempt.audit_id,
        operationType=plan.operation,
        triggeredBy=attempt.principal.to_dict(),
        emergency=attempt.emergency,
        window={"startDate": plan.window.start_iso, "endDate": plan.window.end_iso},
        partitions=plan.partitions(),
        note=plan.note,
        statusUrl=status_url(attempt.audit_id),
    )


def refusal(attempt: Attempt, emergency_requested: bool) -> ApiError:
    """The error of a refused attempt: 429 for the rate limit, 503 for the kill switch or unreadable state."""
    reason = str(attempt.skip_reason)
    if attempt.retry_after is not None and attempt.rate_limit is not None:
        return ApiError(429, reason, attempt.rate_limit.message, audit_id=attempt.audit_id,
                        headers=attempt.rate_limit.headers())
    message = attempt.message.removeprefix(f"{reason}: ")
    if reason in (SkipReason.KILL_SWITCH_ACTIVE, SkipReason.KILL_SWITCH_UNAVAILABLE,
                  SkipReason.STATE_MISMATCH) and emergency_requested:
        message += (f"; emergency is granted to EMERGENCY_OVERRIDE principals only, "
                    f"{attempt.principal.principal} is {attempt.principal.authority}")
    return ApiError(503, reason, message, audit_id=attempt.audit_id if attempt.audited else None)
