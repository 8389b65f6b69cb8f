"""Dagster resource exposing the safety guard to assets, schedules and sensors.

How a run's attempt is audited (docs/launch-paths.md):

* a run launched by a process that began the attempt itself (CLI `trigger`, a REST
  worker, the demo) carries `opx/audit_id` and `opx/adoption_token`; the guard adopts
  the record only with the token whose hash the record holds, once, for one run;
* a run created by a schedule tick is SCHEDULED (principal SYSTEM): its
  `dagster/schedule_name` and `dagster/tick` tags must name a tick of that schedule in
  the instance that launched this run (the tick's first run, or listed in its run ids);
* a run launched by the late-outcomes automation sensor (directly, or by the backfill its
  tick created) is AUTOMATION, principal `automation`, rate limited with its own limits:
  Dagster tags it `dagster/from_automation_condition`, `dagster/sensor_name` and
  `dagster/tick`, and that tick of that sensor must list the run's id (or its backfill's id)
  among the runs it reserved;
* every other run (launchpad, Materialize, GraphQL, a UI backfill, a run whose claim
  above fails) is `dagster-ui`, MANUAL (BACKFILL for backfills and partition ranges),
  rate limited like a manual trigger, never emergency. `opx/principal`,
  `opx/trigger_type` and `dagster/user` tags are not read.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import dagster as dg

from opx_learning.backends import guard_for
from opx_learning.resources.base import AwsFields, OpxResource
from opx_learning.safety.guard import Attempt, Guard
from opx_learning.safety.models import (
    AUTOMATION,
    SYSTEM,
    AlertHook,
    AuditTransitionError,
    OperationType,
    Principal,
    SafetyError,
    TriggerType,
)
from opx_learning.safety.principals import resolve_principal

AUDIT_ID_TAG = "opx/audit_id"
ADOPTION_TOKEN_TAG = "opx/adoption_token"
UI_PRINCIPAL = "dagster-ui"
SCHEDULE_TAG = "dagster/schedule_name"
SENSOR_TAG = "dagster/sensor_name"
TICK_TAG = "dagster/tick"
AUTOMATION_TAG = "dagster/from_automation_condition"
AUTOMATION_SENSOR = "late_outcomes_automation"
BACKFILL_TAGS = ("dagster/backfill", "dagster/asset_partition_range_start")
_log = logging.getLogger("opx_learning.safety")


def adoption_tags(attempt: Attempt) -> dict[str, str]:
    """The run tags that let a run launched by this process adopt `attempt` (begun `adoptable=True`)."""
    if not attempt.adoption_token:
        raise ValueError(f"audit record {attempt.audit_id} was not begun adoptable")
    return {AUDIT_ID_TAG: attempt.audit_id, ADOPTION_TOKEN_TAG: attempt.adoption_token}


def created_by_schedule_tick(instance: dg.DagsterInstance | None, run_id: str, tags: Mapping[str, str]) -> bool:
    """Whether this run was created by a tick of the schedule its tags name (not just tagged so).

    The daemon creates the tick (status STARTED) before evaluating the schedule, tags each
    run it creates with `dagster/tick`, and lists the run ids on the tick once it is written.
    A copied tick id therefore fails: a finished tick lists other runs, and a tick still
    being written accepts only its first (oldest) run.
    """
    name, tick_id = tags.get(SCHEDULE_TAG), tags.get(TICK_TAG, "")
    if instance is None or not name or not tick_id.isdigit():
        return False
    try:
        tick = instance.schedule_storage.get_tick(int(tick_id))  # type: ignore[union-attr]
    except Exception:  # noqa: BLE001 - an unknown tick id (or no schedule storage) proves nothing
        return False
    if tick.instigator_type.value != "SCHEDULE" or tick.instigator_name != name:
        return False
    if tick.tick_data.run_ids:
        return run_id in tick.tick_data.run_ids
    runs = instance.get_run_records(dg.RunsFilter(tags={TICK_TAG: tick_id}), ascending=True, limit=1)
    return bool(runs) and runs[0].dagster_run.run_id == run_id and tick.status.value == "STARTED"


def created_by_automation_tick(instance: dg.DagsterInstance | None, run_id: str, tags: Mapping[str, str]) -> bool:
    """Whether this run was launched by a tick of the late-outcomes automation sensor (not just tagged so).

    The asset daemon reserves the ids of a tick's runs and backfills on the tick before
    submitting them, and tags each run with the tick and the sensor; a backfill's runs carry
    the backfill's id. A copied tag therefore fails: the tick does not list the copy's run.
    """
    name, tick_id = tags.get(SENSOR_TAG, ""), tags.get(TICK_TAG, "")
    if instance is None or tags.get(AUTOMATION_TAG) != "true" or not name.endswith(AUTOMATION_SENSOR):
        return False
    if not tick_id.isdigit():
        return False
    try:
        tick = instance.schedule_storage.get_tick(int(tick_id))  # type: ignore[union-attr]
    except Exception:  # noqa: BLE001 - an unknown tick id (or no schedule storage) proves nothing
        return False
    if tick.instigator_name != name:
        return False
    launched = {*(tick.tick_data.reserved_run_ids or []), *(tick.tick_data.run_ids or [])}
    return run_id in launched or tags.get(BACKFILL_TAGS[0], "") in launched


def is_real_tick(context: dg.ScheduleEvaluationContext) -> bool:
    """Whether a schedule evaluation is a daemon tick (which may launch runs), not a dry run or preview.

    The daemon creates the tick before evaluating and passes its log key
    `[repository, schedule, tick id]`; a dry run ("Test schedule", `evaluate_tick`) has no
    tick: its log key, if any, ends with a timestamp.
    """
    key = list(context.log_key or [])
    if len(key) != 3 or not key[2].isdigit() or context.instance_ref is None:
        return False
    try:
        tick = context.instance.schedule_storage.get_tick(int(key[2]))  # type: ignore[union-attr]
    except Exception:  # noqa: BLE001 - no such tick: not a daemon evaluation
        return False
    return tick.instigator_name == key[1] and tick.status.value == "STARTED"


class SafetyResource(OpxResource):
    """Kill switch, maintenance calendar, rate limits and audit trail for Dagster code.

    Configured with its store (the local home, or the aws tables, region and endpoint),
    shown in the UI; every call reads the kill switch fresh from that store.
    """

    def guard(self, on_alert: AlertHook | None = None) -> Guard:
        """A guard over this resource's store.

        Args:
            on_alert: optional `on_alert(severity, alarm, details)` hook (default: publish through
                the backend's alert publisher, SNS or `alerts.jsonl`, logged if delivery fails).

        Returns:
            The Guard (see `opx_learning.safety.guard`).
        """
        if on_alert is None:
            return guard_for(self.settings())
        return guard_for(self.settings(), on_alert=on_alert)

    @property
    def store_description(self) -> str:
        """Which safety store this resource uses: the SQLite path, or tables + region + endpoint."""
        return self.settings().store_description

    def launch_path(
        self,
        run_id: str, tags: Mapping[str, str], instance: dg.DagsterInstance | None
    ) -> tuple[TriggerType, Principal]:
        """Trigger type and principal of a run that adopts no record (rules in the module docstring)."""
        if created_by_schedule_tick(instance, run_id, tags):
            return TriggerType.SCHEDULED, SYSTEM
        if created_by_automation_tick(instance, run_id, tags):
            return TriggerType.AUTOMATION, AUTOMATION
        trigger = TriggerType.BACKFILL if any(tag in tags for tag in BACKFILL_TAGS) else TriggerType.MANUAL
        return trigger, resolve_principal(UI_PRINCIPAL, settings=self.settings())

    def begin_for_run(
        self,
        operation_type: OperationType | str,
        *,
        run_id: str,
        tags: Mapping[str, str],
        parameters: Mapping[str, Any] | None = None,
        guard: Guard | None = None,
        instance: dg.DagsterInstance | None = None,
    ) -> Attempt:
        """Adopt the launching process's attempt (with its token), else begin this run's own attempt.

        Args:
            operation_type: PATTERN_EXTRACTION, CALIBRATION or SNAPSHOT.
            run_id: `context.run_id`.
            tags: `context.run.tags`.
            parameters: service, start_date, end_date, snapshot_type, time_window.
            guard: reuse a guard (default: a new one over the active backend).
            instance: `context.instance`, where a schedule tick is looked up.

        Returns:
            The Attempt; when `allowed` is False the asset yields nothing (its record is SKIPPED).
        """
        guard = guard or self.guard()
        params = dict(parameters or {})
        audit_id = tags.get(AUDIT_ID_TAG)
        if audit_id:
            try:
                return guard.adopt(
                    audit_id, run_id=run_id, token=tags.get(ADOPTION_TOKEN_TAG), operation_type=operation_type
                )
            except (AuditTransitionError, SafetyError) as refused:
                _log.warning("run %s does not adopt %s: %s", run_id, audit_id, refused)
                params["adoption_refused"] = f"{audit_id}: {refused}"[:500]
        trigger, principal = self.launch_path(run_id, tags, instance)
        return guard.begin(
            operation_type,
            trigger,
            principal,
            params,
            run_id=run_id,
            rate_limited=trigger is not TriggerType.SCHEDULED,
        )

    def schedule_gate(
        self,
        operation_type: OperationType | str,
        parameters: Mapping[str, Any] | None = None,
        *,
        context: dg.ScheduleEvaluationContext | None = None,
    ) -> dg.SkipReason | None:
        """For a schedule evaluation: `dg.SkipReason` when blocked, else None.

        The refusal is audited as SKIPPED only on a daemon tick (`is_real_tick`); a dry run
        or preview gets the same answer and writes nothing.
        """
        real = context is not None and is_real_tick(context)
        refusal = self.guard().gate(operation_type, parameters, record=real)
        if refusal is None:
            return None
        return dg.SkipReason(refusal.message if real else f"{refusal.message} (dry run: not audited)")


class LocalSafetyResource(SafetyResource):
    """The safety layer in the home's SQLite `state.db`."""


class AwsSafetyResource(SafetyResource, AwsFields):
    """The safety layer in the DynamoDB audit and config tables."""
