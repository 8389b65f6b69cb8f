"""Dagster resource exposing the safety guard (SPEC §5) to assets, schedules and sensors."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import dagster as dg

from opx_learning.config import get_settings
from opx_learning.safety.guard import Attempt, Guard
from opx_learning.safety.models import (
    SYSTEM,
    AlertHook,
    OperationType,
    Principal,
    TriggerType,
)
from opx_learning.safety.principals import resolve_principal

AUDIT_ID_TAG = "opx/audit_id"
TRIGGER_TYPE_TAG = "opx/trigger_type"
PRINCIPAL_TAG = "opx/principal"


class SafetyResource(dg.ConfigurableResource):
    """Kill switch, maintenance calendar, rate limits and audit trail for Dagster code.

    The backend follows `OPX_BACKEND` / `OPX_HOME` at call time, so one resource
    definition serves local and AWS deployments. Every call reads the kill switch
    fresh from the store.
    """

    def get_resource_definition(self) -> Any:
        """Dagster's definition of this resource, its description naming the safety store (shown in the UI)."""
        definition = super().get_resource_definition()
        label = f"Safety store: {get_settings().store_description}"
        if label not in (definition.description or ""):
            text = inspect.cleandoc(definition.description or "")
            definition._description = f"{text}\n\n{label}"
        return definition

    def guard(self, on_alert: AlertHook | None = None) -> Guard:
        """A guard over the active backend.

        Args:
            on_alert: optional `on_alert(severity, alarm, details)` hook (default: publish through
                the active backend's alert publisher, SNS or `alerts.jsonl`, logged if delivery fails).

        Returns:
            The Guard (see `opx_learning.safety.guard`).
        """
        if on_alert is None:
            return Guard.from_settings(get_settings())
        return Guard.from_settings(get_settings(), on_alert=on_alert)

    @staticmethod
    def trigger_type_from_tags(tags: Mapping[str, str]) -> TriggerType:
        """SCHEDULED for schedule/sensor runs, BACKFILL for backfills and partition ranges, else MANUAL.

        An explicit `opx/trigger_type` tag (set by `opx-learning trigger`) wins.
        """
        explicit = tags.get(TRIGGER_TYPE_TAG)
        if explicit:
            return TriggerType.parse(explicit, TRIGGER_TYPE_TAG)
        if "dagster/schedule_name" in tags or "dagster/sensor_name" in tags:
            return TriggerType.SCHEDULED
        if "dagster/backfill" in tags or "dagster/asset_partition_range_start" in tags:
            return TriggerType.BACKFILL
        return TriggerType.MANUAL

    @staticmethod
    def principal_for(trigger_type: TriggerType, tags: Mapping[str, str] | None = None) -> Principal:
        """SYSTEM for scheduled runs; otherwise the `opx/principal` tag, else `dagster/user`, else the process identity.

        The authority always comes from the principals file, and run tags never grant the
        emergency bypass (only an attempt begun by an authenticated trigger can carry it).
        """
        if trigger_type is TriggerType.SCHEDULED:
            return SYSTEM
        tags = tags or {}
        return resolve_principal(tags.get(PRINCIPAL_TAG) or tags.get("dagster/user") or None)

    def begin_for_run(
        self,
        operation_type: OperationType | str,
        *,
        run_id: str,
        tags: Mapping[str, str],
        parameters: Mapping[str, Any] | None = None,
        guard: Guard | None = None,
    ) -> Attempt:
        """Start (or adopt, when the run carries `opx/audit_id`) the audited attempt of one run.

        Args:
            operation_type: PATTERN_EXTRACTION, CALIBRATION or SNAPSHOT.
            run_id: `context.run_id`.
            tags: `context.run.tags`.
            parameters: service, start_date, end_date, snapshot_type, time_window.
            guard: reuse a guard (default: a new one over the active backend).

        Returns:
            The Attempt; when `allowed` is False the asset yields nothing (its record is SKIPPED).
        """
        guard = guard or self.guard()
        audit_id = tags.get(AUDIT_ID_TAG)
        if audit_id:
            return guard.adopt(audit_id, run_id=run_id, operation_type=operation_type)
        trigger = self.trigger_type_from_tags(tags)
        return guard.begin(
            operation_type,
            trigger,
            self.principal_for(trigger, tags),
            parameters,
            run_id=run_id,
        )

    def schedule_gate(
        self, operation_type: OperationType | str, parameters: Mapping[str, Any] | None = None
    ) -> dg.SkipReason | None:
        """For a schedule tick: `dg.SkipReason` (already audited as SKIPPED) when blocked, else None."""
        refusal = self.guard().gate(operation_type, parameters)
        return dg.SkipReason(refusal.message) if refusal is not None else None
