"""The morning checklist in Dagster: one asset check per item, the checklist job and its 09:00 digest.

Each item of `opx_learning.core.checklist` is an asset check on the asset it describes,
partitioned like it, so the UI keeps one result per day, week or month (a WARN on
October's calibration stays on October). Items about the audit trail as a whole hang
on two assets that only carry checks: `audit_trail_daily` and `audit_trail_weekly`.

`morning_checklist_job` (one op) evaluates every item due at the time in the run tag
`opx/checklist_at` (else now) and records each result as a check evaluation of the
period's partition, so one run shows the whole checklist; with the tag
`opx/checklist_digest=true` (set by `morning_checklist_schedule`, 09:00 UTC) it also
sends one digest alert through the alert publisher. The integrity sweep raises its own
P0 DATA_CORRUPTION alarm whenever it finds damage (as `opx-learning verify` does). Executing a check from the UI evaluates that one
partition as of the morning that reviews it (`checklist_time`), or now if that is
later than now. Learning runs do not evaluate checks.
"""

import warnings
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from opx_learning.core import checklist as cl
from opx_learning.core.windows import iso, to_utc
from opx_learning.defs.checklist import Context, digest_alert
from opx_learning.defs.location import Location, Names
from opx_learning.defs.monitors import heartbeat
from opx_learning.defs.partitions import partition_window
from opx_learning.integrity.sweep import run_sweep
from opx_learning.resources.alerts import AlertsResource
from opx_learning.resources.io_managers import AssetStorage
from opx_learning.resources.safety import SafetyResource
from opx_learning.resources.stores import OutcomeStoreResource

CHECKLIST_AT_TAG = "opx/checklist_at"
DIGEST_TAG = "opx/checklist_digest"
_STATUS_SEVERITY = {cl.FAIL: dg.AssetCheckSeverity.ERROR, cl.WARN: dg.AssetCheckSeverity.WARN}

def checklist_context(
    at: datetime,
    instance: dg.DagsterInstance,
    safety: SafetyResource,
    asset_storage: AssetStorage,
    outcome_store: OutcomeStoreResource,
    integrity: Any = None,
    names: Names | None = None,
) -> Context:
    """The reading context of one evaluation."""
    audit = safety.guard().audit
    return Context(at, instance, audit, asset_storage, outcome_store, safety.settings(), integrity, names or Names())


def check_result(result: cl.ItemResult) -> dg.AssetCheckResult:
    """An item result as Dagster's check result (FAIL = ERROR, WARN = WARN)."""
    return dg.AssetCheckResult(
        passed=result.status == cl.PASS,
        severity=_STATUS_SEVERITY.get(result.status, dg.AssetCheckSeverity.WARN),
        description=result.figure,
        metadata=_metadata(result),
    )


def _metadata(result: cl.ItemResult) -> dict[str, Any]:
    own = {
        name: dg.MetadataValue.md(str(value)) if isinstance(value, cl.Markdown) else value
        for name, value in result.metadata.items()
    }
    return {"period": result.period, "status": result.status, "severity": result.severity or "-", **own}


def _item_check(loc: Location, item: cl.Item) -> dg.AssetChecksDefinition:
    assert item.cadence is not None
    cadence = item.cadence
    cadences = loc.partitions.cadence
    names = loc.names

    @dg.asset_check(
        asset=names.key(item.asset),
        name=item.name,
        description=f"{item.description} ({cl.LIST_TITLES[item.checklist]} checklist)",
        partitions_def=cadences[cadence],
        required_resource_keys=names.required("safety", "asset_storage", "outcome_store"),
    )
    def _check(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        r = names.resources(context)

        def evaluate(key: str) -> cl.ItemResult:
            at = min(cl.checklist_time(cadence, partition_window(cadences[cadence], key)), datetime.now(UTC))
            reading = checklist_context(at, context.instance, r.safety, r.asset_storage, r.outcome_store, names=names)
            return cl.evaluate_item(item, reading, key)

        keys = context.op_execution_context.partition_keys
        if len(keys) == 1:
            return check_result(evaluate(keys[0]))
        # A range run (e.g. a backfill from the UI) records each partition's own result, so none stays PLANNED;
        # the returned result repeats the last partition's for the step.
        for key in keys:
            result = check_result(evaluate(key))
            context.op_execution_context.log_event(
                dg.AssetCheckEvaluation(
                    asset_key=names.key(item.asset),
                    check_name=item.name,
                    passed=result.passed,
                    severity=result.severity,
                    description=result.description,
                    metadata=result.metadata,
                    partition=key,
                )
            )
        return check_result(evaluate(keys[-1]))

    return _check


def _table(results: list[cl.ItemResult]) -> str:
    lines = ["| list | item | period | status | figure |", "|---|---|---|---|---|"]
    lines += [
        f"| {r.checklist} | {r.name} | {r.period} | {r.status} | {r.figure.replace('|', '/')} |" for r in results
    ]
    return "\n".join(lines)


def _morning_checklist(
    context: dg.OpExecutionContext,
    safety: SafetyResource,
    alerts: AlertsResource,
    asset_storage: AssetStorage,
    outcome_store: OutcomeStoreResource,
    names: Names,
) -> dg.Output:
    raw = context.run.tags.get(CHECKLIST_AT_TAG)
    at = to_utc(raw, CHECKLIST_AT_TAG) if raw else datetime.now(UTC)
    send = context.run.tags.get(DIGEST_TAG) == "true"

    def integrity(window: Any) -> Any:
        # Corruption is a P0 of its own wherever it is found, digest or not.
        return run_sweep(window, alerts.settings(), source="daily sweep", publisher=alerts.publisher())

    reading = checklist_context(at, context.instance, safety, asset_storage, outcome_store, integrity, names)
    results = cl.evaluate(reading)
    for result in results:
        context.log_event(
            dg.AssetCheckEvaluation(
                asset_key=names.key(result.asset),
                check_name=result.name,
                passed=result.status == cl.PASS,
                severity=_STATUS_SEVERITY.get(result.status, dg.AssetCheckSeverity.WARN),
                description=result.figure,
                metadata=_metadata(result),
                partition=result.partition,
            )
        )
    tally = cl.counts(results)
    summary = {"at": iso(at), "lists": ", ".join(cl.due_lists(at)), **{k.lower(): v for k, v in tally.items()}}
    if send:
        alert = digest_alert(results, at)
        delivered = alerts.publisher().publish(alert)
        summary |= {"digest_severity": alert.severity, "digest_delivered": delivered}
        context.log.info(f"digest {alert.severity} ({alert.details['summary']}) delivered: {delivered}")
    return dg.Output(
        [result.to_dict() for result in results],
        metadata={**summary, "checklist": dg.MetadataValue.md(_table(results))},
    )


def build_checklist(loc: Location) -> dg.Definitions:
    """The checklist's carrier assets, its item checks, its job and its 09:00 schedule for one location."""
    names, cadences = loc.names, loc.partitions.cadence
    audit_trail_daily = dg.AssetSpec(
        names.key("audit_trail_daily"),
        group_name="checklist",
        partitions_def=cadences["DAILY"],
        kinds={"sqlite"},
        description="The learning operations' audit trail as the daily checklist reviews it (24 h before 09:00 UTC); "
        "never materialized, it carries the checklist's audit items.",
    )
    audit_trail_weekly = dg.AssetSpec(
        names.key("audit_trail_weekly"),
        group_name="checklist",
        partitions_def=cadences["WEEKLY"],
        kinds={"sqlite"},
        description="The learning operations' audit trail as the Monday checklist reviews it (7 days before Monday "
        "09:00 UTC, trends over 4 more weeks); never materialized, it carries the weekly trend items.",
    )
    # Partitioned checks are a Dagster preview (1.13): the notice would print on every CLI call.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        checks = [_item_check(loc, item) for item in cl.ITEMS if item.cadence is not None]
    rows = names("checklist_rows")

    @dg.op(
        name=names("morning_checklist"),
        description="Evaluate every checklist item due at the checklist time; record each against its period's partition.",
        required_resource_keys=names.required("safety", "alerts", "asset_storage", "outcome_store"),
        # The rows live for the run only (the checks' evaluations are what is stored).
        out=dg.Out(list, description="The items as JSON-safe rows.", io_manager_key=rows),
    )
    def morning_checklist_op(context: dg.OpExecutionContext) -> dg.Output:
        """Evaluate the checklist, log one check evaluation per item, send the digest when the run asks for it."""
        r = names.resources(context)
        return _morning_checklist(context, r.safety, r.alerts, r.asset_storage, r.outcome_store, names)

    @dg.job(
        name=names("morning_checklist_job"),
        description="The runbook's morning checklist as of the tag opx/checklist_at (else now): every due item, "
        "recorded against its period; opx/checklist_digest=true also sends the digest alert.",
    )
    def morning_checklist_job() -> None:
        """One op evaluating every due item of the checklist."""
        morning_checklist_op()

    @dg.schedule(
        name=names("morning_checklist_schedule"),
        cron_schedule="0 9 * * *",
        job=morning_checklist_job,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description="The runbook's 09:00 UTC morning checklist (daily, Monday, first-Monday lists) and one digest alert.",
    )
    @heartbeat(names("morning_checklist_schedule"), loc.settings)
    def morning_checklist_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        """Run the checklist as of the tick's time and send its digest."""
        tick = (context.scheduled_execution_time or datetime.now(UTC)).astimezone(UTC)
        return dg.RunRequest(
            run_key=f"{names('morning_checklist')}:{iso(tick)}",
            tags={CHECKLIST_AT_TAG: iso(tick), DIGEST_TAG: "true"},
        )

    return dg.Definitions(
        assets=[audit_trail_daily, audit_trail_weekly],
        asset_checks=checks,
        jobs=[morning_checklist_job],
        schedules=[morning_checklist_schedule],
        resources={rows: dg.mem_io_manager},
    )
