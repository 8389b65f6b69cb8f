"""Request and response bodies of the REST API (camelCase, as in the runbook)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SNAPSHOT_TYPES = ("DAILY", "WEEKLY", "MONTHLY", "CUSTOM")
_DATE = "Date, aware datetime or ISO-8601 string (2026-01-01, 2026-01-01T00:00:00.000Z); naive values are UTC."


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _TriggerBody(_Body):
    startDate: str = Field(description="Window start. " + _DATE, examples=["2026-01-01T00:00:00.000Z"])
    endDate: str = Field(
        description="Window end, exclusive; `...T23:59:59.999Z` means the end of that day. " + _DATE,
        examples=["2026-01-31T23:59:59.999Z"],
    )
    emergency: bool = Field(
        False, description="Ask to bypass the kill switch; granted to EMERGENCY_OVERRIDE principals only."
    )


class ExtractPatternsRequest(_TriggerBody):
    """Body of `POST /learning/extract-patterns`."""

    service: str | None = Field(
        None, description="A service that must have outcomes in the window (summaries cover every service).",
        examples=["order-service"],
    )
    timeWindow: str | None = Field(
        None,
        description="DAILY, WEEKLY or CUSTOM (any case). Default: DAILY for whole days, else one CUSTOM window.",
        json_schema_extra={"enum": ["DAILY", "WEEKLY", "CUSTOM"]},
    )


class CalibrateRequest(_TriggerBody):
    """Body of `POST /learning/calibrate`."""

    timeWindow: str | None = Field(
        None,
        description="MONTHLY or CUSTOM (any case). Default: MONTHLY for whole calendar months, else one CUSTOM window.",
        json_schema_extra={"enum": ["MONTHLY", "CUSTOM"]},
    )


class CreateSnapshotRequest(_TriggerBody):
    """Body of `POST /learning/create-snapshot`."""

    snapshotType: str = Field(
        description="DAILY, WEEKLY, MONTHLY or CUSTOM (any case); DAILY/WEEKLY/MONTHLY need whole partitions whose "
        "pattern summaries exist.",
        json_schema_extra={"enum": list(SNAPSHOT_TYPES)},
        examples=["CUSTOM"],
    )


class DisableRequest(_Body):
    """Body of `POST /learning/kill-switch/disable`."""

    reason: str | None = Field(None, description="Why operations are blocked (required).",
                               examples=["Production incident - investigating data quality issues"])
    until: str | None = Field(None, description="Optional planned re-enable time (ISO-8601, in the future).")


class EnableRequest(_Body):
    """Body of `POST /learning/kill-switch/enable`: none needed; an empty object is accepted."""


class PrincipalBody(BaseModel):
    """Who triggered an operation and with which authority (from the principals file)."""

    type: str
    principal: str


class TriggerAccepted(BaseModel):
    """202 body of an accepted trigger; the run executes in the background and completes the audit record."""

    auditId: str
    status: Literal["ACCEPTED"] = "ACCEPTED"
    operationType: str
    triggeredBy: PrincipalBody
    emergency: bool = Field(description="Whether the kill-switch bypass was granted.")
    window: dict[str, str] = Field(description="`{startDate, endDate}` as normalised half-open UTC instants.")
    partitions: dict[str, Any] = Field(description="`{type, first, last, count}` of the partitions the run materializes.")
    note: str | None = None
    statusUrl: str = Field(description="Where to poll the audit record (`GET /learning/audit/{auditId}`).")


class KillSwitchChangeResponse(BaseModel):
    """Body of an accepted kill-switch change (runbook)."""

    status: Literal["DISABLED", "ENABLED"]
    message: str
    auditId: str
    store: str = Field(description="The safety store that was used: the SQLite path, or tables + region + endpoint.")


class DisabledBy(BaseModel):
    """Who disabled the kill switch."""

    type: str
    identifier: str


class KillSwitchStatusResponse(BaseModel):
    """Body of `GET /learning/kill-switch/status` (runbook); `until` only for a planned window."""

    active: bool
    enabled: bool
    disabledAt: str | None
    disabledBy: DisabledBy | None
    reason: str | None
    lastModified: str | None
    until: str | None = None
    store: str = Field(description="The safety store that was used: the SQLite path, or tables + region + endpoint.")


class ErrorResponse(BaseModel):
    """Body of every error: a code, a sentence naming the field and value, and the audit id when one was written."""

    error: str
    message: str
    auditId: str | None = None
    store: str | None = Field(None, description="The safety store, on errors about the kill switch state.")


class HealthResponse(BaseModel):
    """Body of `GET /health`."""

    status: Literal["ok"] = "ok"
    backend: str
    runs: dict[str, int] = Field(description="`{running, queued}` background trigger runs of this server.")
    store: str = Field(description="The safety store that was used: the SQLite path, or tables + region + endpoint.")
