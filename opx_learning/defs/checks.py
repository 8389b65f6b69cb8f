"""The runbook's morning checklist as asset checks (SPEC §7, RUNBOOK "Morning Checklist").

Each check evaluates one partition: the partition of the run it runs in (a
scheduled, manual or backfill run of the asset), else the last complete partition
(the day / week / month a schedule at 00:00 or 01:00 targets) at the time given by
the run tag `opx/checklist_at` (ISO-8601, e.g. to replay a past morning) or now,
which is what the `morning_checklist_job` (09:00 UTC) evaluates. Durations come from the
`duration_per_partition_ms` metadata every asset records (a range run's duration
divided by its partitions), compared with the runbook's expected durations.

The error-rate check reads the audit trail instead of a partition: the records started
in the 24 hours before the evaluation, which is always the wall clock (audit records are
stamped when operations ran, so `opx/checklist_at` does not shift it).
"""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import polars as pl

from opx_learning.core.schema import (
    ALL_SERVICES,
    CALIBRATION_MIN_OUTCOMES,
    DRIFT_CRITICAL,
)
from opx_learning.core.windows import to_utc
from opx_learning.defs import assets as a
from opx_learning.defs.partitions import (
    CADENCE_PARTITIONS,
    custom_partitions,
    daily_partitions,
    last_complete_key,
    monthly_partitions,
    partition_window,
    weekly_partitions,
)
from opx_learning.resources.io_managers import AssetStorage
from opx_learning.resources.safety import SafetyResource
from opx_learning.resources.stores import OutcomeStoreResource
from opx_learning.safety.audit import AuditLog, utcnow
from opx_learning.safety.models import LEARNING_OPERATIONS, AuditStatus

ERROR = dg.AssetCheckSeverity.ERROR
WARN = dg.AssetCheckSeverity.WARN
_PARTITION_TAG = "dagster/partition"
_RANGE_END_TAG = "dagster/asset_partition_range_end"
CHECKLIST_AT_TAG = "opx/checklist_at"
ERROR_RATE_LIMIT = 0.10
ERROR_RATE_WINDOW = timedelta(hours=24)


def target_partition(context: dg.AssetCheckExecutionContext, partitions_def: dg.PartitionsDefinition) -> str | None:
    """The partition a check evaluates: the run's (or its range's last), else the last complete one."""
    tags = context.run.tags
    for tag in (_PARTITION_TAG, _RANGE_END_TAG):
        key = tags.get(tag)
        if key and _has_key(partitions_def, key, context.instance):
            return key
    if isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        at = tags.get(CHECKLIST_AT_TAG)
        return last_complete_key(partitions_def, to_utc(at, CHECKLIST_AT_TAG) if at else datetime.now(UTC))
    records = context.instance.fetch_materializations(context.check_specs[0].asset_key, limit=1).records
    return records[0].partition_key if records else None


def _has_key(partitions_def: dg.PartitionsDefinition, key: str, instance: dg.DagsterInstance) -> bool:
    if isinstance(partitions_def, dg.DynamicPartitionsDefinition):
        return instance.has_dynamic_partition(partitions_def.name, key)
    return partitions_def.has_partition_key(key)


def latest_metadata(instance: dg.DagsterInstance, asset_key: dg.AssetKey, partition: str) -> dict[str, Any] | None:
    """Metadata values of a partition's latest materialization, or None if never materialized."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=[partition]), limit=1
    ).records
    if not records or records[0].asset_materialization is None:
        return None
    values = {name: value.value for name, value in records[0].asset_materialization.metadata.items()}
    # A range run records its totals on every partition; the partition's own numbers are in `per_partition`.
    own = (values.get("per_partition") or {}).get(partition)
    values["materialized_at"] = records[0].timestamp
    return {**values, **own} if isinstance(own, dict) else values


def _missing(partition: str | None, severity: dg.AssetCheckSeverity) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=False,
        severity=severity,
        description=f"partition {partition} is not materialized",
        metadata={"partition": str(partition)},
    )


def _materialized_check(
    asset: dg.AssetsDefinition, name: str, partitions_def: dg.TimeWindowPartitionsDefinition, what: str
) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=asset, name=name, description=f"The {what} partition is materialized.")
    def _check(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        partition = target_partition(context, partitions_def)
        metadata = latest_metadata(context.instance, asset.key, partition) if partition else None
        if metadata is None:
            return _missing(partition, ERROR)
        when = datetime.fromtimestamp(metadata["materialized_at"], UTC).strftime("%Y-%m-%d %H:%M UTC")
        return dg.AssetCheckResult(
            passed=True,
            severity=ERROR,
            description=f"partition {partition} materialized at {when}",
            metadata={"partition": partition},
        )

    return _check


def _metadata_check(
    asset: dg.AssetsDefinition,
    name: str,
    partitions_def: dg.PartitionsDefinition,
    severity: dg.AssetCheckSeverity,
    description: str,
    judge: Callable[[dict[str, Any]], tuple[bool, str, dict[str, Any]]],
) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=asset, name=name, description=description)
    def _check(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        partition = target_partition(context, partitions_def)
        metadata = latest_metadata(context.instance, asset.key, partition) if partition else None
        if metadata is None:
            return _missing(partition, severity)
        passed, text, values = judge(metadata)
        return dg.AssetCheckResult(
            passed=passed, severity=severity, description=text, metadata={"partition": partition, **values}
        )

    return _check


def _duration_check(
    asset: dg.AssetsDefinition, name: str, partitions_def: dg.PartitionsDefinition, label: str
) -> dg.AssetChecksDefinition:
    limit_ms = a.EXPECTED_MS[asset.key.to_user_string()]

    def judge(metadata: dict[str, Any]) -> tuple[bool, str, dict[str, Any]]:
        took = float(metadata.get("duration_per_partition_ms", metadata.get("duration_ms", 0.0)))
        return (
            took < limit_ms,
            f"{took / 1000:.1f} s per partition (runbook: < {label})",
            {"duration_ms": took, "limit_ms": limit_ms},
        )

    return _metadata_check(asset, name, partitions_def, WARN, f"Run duration within the runbook's {label}.", judge)


def _not_empty(metadata: dict[str, Any]) -> tuple[bool, str, dict[str, Any]]:
    outcomes = int(metadata.get("outcomes", 0))
    empty = bool(metadata.get("empty", outcomes == 0))
    text = "empty window: no outcomes, summaries or calibrations" if empty else f"{outcomes} outcomes"
    return not empty, text, {"outcomes": outcomes}


def _drift_within(metadata: dict[str, Any]) -> tuple[bool, str, dict[str, Any]]:
    drift = float(metadata.get("max_abs_drift", 0.0))
    signed = float(metadata.get("drift", 0.0))
    text = (
        f"max |drift| {drift:.3f} (signed {signed:+.3f}) "
        + ("within 0.15" if drift < DRIFT_CRITICAL else "exceeds 0.15: review the band recommendations (advisory)")
    )
    return drift < DRIFT_CRITICAL, text, {"max_abs_drift": drift, "drift": signed}


def _no_rejections(metadata: dict[str, Any]) -> tuple[bool, str, dict[str, Any]]:
    rejected = int(metadata.get("rejected", 0))
    return rejected == 0, f"{rejected} rejected rows (kept under rejected_outcomes/)", {"rejected": rejected}


@dg.asset_check(
    asset=a.confidence_calibration,
    description="The calibration month has at least 30 outcomes with a predicted confidence.",
)
def calibration_has_at_least_30_outcomes(
    context: dg.AssetCheckExecutionContext, outcome_store: OutcomeStoreResource, asset_storage: AssetStorage
) -> dg.AssetCheckResult:
    """Outcome count of the month >= 30 (from the calibration, else counted from the outcomes)."""
    partition = target_partition(context, monthly_partitions)
    if partition is None:
        return _missing(partition, ERROR)
    metadata = latest_metadata(context.instance, a.confidence_calibration.key, partition)
    if metadata is not None:
        count, source = int(metadata["outcome_count"]), "calibration"
    else:
        outcomes = a.read_outcomes(asset_storage, outcome_store, partition_window(monthly_partitions, partition))
        count, source = int(outcomes["predicted_confidence"].is_not_null().sum()), "outcome store"
    passed = count >= CALIBRATION_MIN_OUTCOMES and metadata is not None
    if count < CALIBRATION_MIN_OUTCOMES:
        text = f"INSUFFICIENT_DATA: {count} outcomes with a confidence in {partition[:7]} (< 30); calibration fails"
    elif metadata is None:
        text = f"{count} outcomes available but {partition[:7]} is not calibrated yet"
    else:
        text = f"{count} outcomes"
    return dg.AssetCheckResult(
        passed=passed,
        severity=ERROR,
        description=text,
        metadata={"partition": partition, "outcome_count": count, "required": CALIBRATION_MIN_OUTCOMES, "source": source},
    )


@dg.asset_check(
    asset=a.pattern_summaries_weekly,
    description="Every service with outcomes in the week has a weekly pattern summary.",
)
def all_services_have_weekly_patterns(
    context: dg.AssetCheckExecutionContext, outcome_store: OutcomeStoreResource, asset_storage: AssetStorage
) -> dg.AssetCheckResult:
    """Services in the week's outcomes minus services in the week's summaries must be empty."""
    partition = target_partition(context, weekly_partitions)
    summary = asset_storage.read(a.pattern_summaries_weekly.key, partition) if partition else None
    if not isinstance(summary, pl.DataFrame):
        return _missing(partition, ERROR)
    outcomes = a.read_outcomes(asset_storage, outcome_store, partition_window(weekly_partitions, partition))
    expected = set(outcomes["service"].unique().to_list())
    covered = set(summary["service"].to_list()) - {ALL_SERVICES}
    missing = sorted(expected - covered)
    return dg.AssetCheckResult(
        passed=not missing,
        severity=ERROR,
        description=f"missing: {', '.join(missing)}" if missing else f"all {len(expected)} services covered",
        metadata={"partition": partition, "services": len(expected), "missing": ", ".join(missing) or "-"},
    )


def error_rates(audit: AuditLog, now: datetime, window: timedelta = ERROR_RATE_WINDOW) -> dict[str, tuple[int, int]]:
    """`{operation_type: (failed, succeeded + failed)}` of the records started in `[now - window, now)`."""
    rates = {}
    for operation in LEARNING_OPERATIONS:
        records = audit.by_operation(operation, now - window, now, limit=None)
        failed = sum(record.status is AuditStatus.FAILED for record in records)
        succeeded = sum(record.status is AuditStatus.SUCCESS for record in records)
        rates[operation.value] = (failed, failed + succeeded)
    return rates


@dg.asset_check(
    asset=a.pattern_summaries_daily,
    description="Over the last 24 h of audit records, FAILED / (SUCCESS + FAILED) < 10 % for every operation type.",
)
def error_rate_under_10_percent(safety: SafetyResource) -> dg.AssetCheckResult:
    """WARN when any operation type failed in 10 % or more of its completed attempts of the last 24 h."""
    rates = error_rates(safety.guard().audit, utcnow())
    parts, metadata, over = [], {}, []
    for operation, (failed, completed) in rates.items():
        if not completed:
            continue
        rate = failed / completed
        metadata[f"{operation.lower()}_error_rate"] = round(rate, 4)
        metadata[f"{operation.lower()}_failed"] = failed
        metadata[f"{operation.lower()}_completed"] = completed
        parts.append(f"{operation} {failed}/{completed} failed ({rate:.1%})")
        if rate >= ERROR_RATE_LIMIT:
            over.append(operation)
    if not parts:
        text = "no SUCCESS or FAILED operation in the last 24 h"
    else:
        text = "; ".join(parts) + (f" -- {', '.join(over)} at or over 10 %" if over else ", all under 10 %")
    return dg.AssetCheckResult(passed=not over, severity=WARN, description=text, metadata=metadata)


CHECKS: list[dg.AssetChecksDefinition] = [
    _materialized_check(a.daily_outcomes, "previous_day_outcomes_materialized", daily_partitions, "previous day's"),
    _metadata_check(
        a.daily_outcomes,
        "daily_outcomes_have_no_rejected_rows",
        daily_partitions,
        WARN,
        "Validation rejected no outcome of the day (rejected rows are kept, never lost).",
        _no_rejections,
    ),
    _materialized_check(
        a.pattern_summaries_daily, "previous_day_patterns_materialized", daily_partitions, "previous day's"
    ),
    _duration_check(
        a.pattern_summaries_daily, "pattern_extraction_duration_under_2_minutes", daily_partitions, "2 minutes"
    ),
    error_rate_under_10_percent,
    _materialized_check(
        a.pattern_summaries_weekly, "previous_week_patterns_materialized", weekly_partitions, "previous week's"
    ),
    _duration_check(
        a.pattern_summaries_weekly,
        "weekly_pattern_extraction_duration_under_5_minutes",
        weekly_partitions,
        "5 minutes",
    ),
    all_services_have_weekly_patterns,
    _materialized_check(
        a.confidence_calibration, "previous_month_calibration_materialized", monthly_partitions, "previous month's"
    ),
    _duration_check(
        a.confidence_calibration, "calibration_duration_under_10_minutes", monthly_partitions, "10 minutes"
    ),
    calibration_has_at_least_30_outcomes,
    _metadata_check(
        a.confidence_calibration,
        "calibration_drift_within_0_15",
        monthly_partitions,
        WARN,
        "Max |drift| of sufficient bands < 0.15 (advisory: review recommendations, nothing changes).",
        _drift_within,
    ),
    _materialized_check(
        a.drift_metrics_asset, "previous_month_drift_metrics_materialized", monthly_partitions, "previous month's"
    ),
    _materialized_check(
        a.learning_snapshots_daily, "previous_day_snapshot_materialized", daily_partitions, "previous day's"
    ),
    _duration_check(
        a.learning_snapshots_daily, "daily_snapshot_duration_under_1_minute", daily_partitions, "1 minute"
    ),
    _materialized_check(
        a.learning_snapshots_weekly, "previous_week_snapshot_materialized", weekly_partitions, "previous week's"
    ),
    _duration_check(
        a.learning_snapshots_weekly, "weekly_snapshot_duration_under_2_minutes", weekly_partitions, "2 minutes"
    ),
    _materialized_check(
        a.learning_snapshots_monthly, "previous_month_snapshot_materialized", monthly_partitions, "previous month's"
    ),
    _duration_check(
        a.learning_snapshots_monthly, "monthly_snapshot_duration_under_5_minutes", monthly_partitions, "5 minutes"
    ),
    *(
        _metadata_check(
            snapshot,
            "snapshot_window_not_empty",
            partitions_def,
            WARN,
            "The snapshot's window holds outcomes (an empty window gives a valid, empty snapshot).",
            _not_empty,
        )
        for snapshot, partitions_def in (
            (a.learning_snapshots_daily, CADENCE_PARTITIONS["DAILY"]),
            (a.learning_snapshots_weekly, CADENCE_PARTITIONS["WEEKLY"]),
            (a.learning_snapshots_monthly, CADENCE_PARTITIONS["MONTHLY"]),
            (a.learning_snapshot_custom, custom_partitions),
        )
    ),
]
