"""The one wrapper every guarded asset runs its work through: guard, timing, metadata.

A guarded operation (SPEC §5) starts with the safety guard: the kill switch is
checked and a RUNNING audit record written before any work (or, for a run launched
by `opx-learning trigger`, the trigger's record carried in the `opx/audit_id` tag is
adopted and re-checked); afterwards the record is completed SUCCESS with the results
or FAILED with the error. A refused operation yields no output (assets declare
`output_required=False`) and an `AssetObservation` carrying the reason, so the run
ends SUCCESS, downstream steps are skipped and nothing cascades.

Guarded assets therefore never take upstream data as Dagster inputs (an input is
loaded before the asset body, i.e. before the guard): they declare their upstreams as
`deps=` and read them inside `work`, after the guard. Missing upstream data raises
`InsufficientInput` (reason UPSTREAM_MISSING, naming the partitions), which completes
the record FAILED and fails the step with a plain `dg.Failure`.

The audit record's `results` hold the work's results plus `work_duration_ms` (the
time spent in the work itself; the record's own `duration_ms` spans the whole
attempt) and `partitions`.

Trigger type and principal come from the run tags (`SafetyResource`):
`opx/trigger_type`, else schedule/sensor -> SCHEDULED (principal SYSTEM), backfill or
partition range -> BACKFILL, else MANUAL; principal `opx/principal`, else
`dagster/user`, else the process identity.

A run covering several partitions (single-run backfills) returns one output
`{partition_key: value}`: Dagster records one materialization per partition with
the run's metadata (range totals), and the per-partition numbers are kept in the
`per_partition` JSON. A one-partition run (every scheduled run) carries that
partition's own numbers, which the UI plots over time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from opx_learning.resources.safety import SafetyResource


@dataclass
class Produced:
    """What an operation's work returns.

    Attributes:
        values: `{partition_key: value}` stored by the IO manager (one file per key).
        metadata: per-partition materialization metadata.
        results: JSON-safe results written to the audit record.
        summary: metadata for a whole range run.
    """

    values: dict[str, Any]
    metadata: dict[str, dict[str, Any]]
    results: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


class InsufficientInput(Exception):
    """The operation cannot run on its input (too few outcomes, upstream not materialized): FAILED with a reason."""

    def __init__(self, message: str, reason: str, metadata: dict[str, Any]) -> None:
        super().__init__(message)
        self.reason = reason
        self.metadata = metadata


def run_operation(
    context: dg.AssetExecutionContext,
    safety: SafetyResource | None,
    operation_type: str,
    parameters: dict[str, Any],
    work: Callable[[], Produced],
) -> Iterator[dg.Output | dg.AssetObservation]:
    """Run `work` under the guard (`safety=None`: unguarded input stage) and yield the asset's events."""
    if safety is None:
        started = time.perf_counter()
        produced = work()
        yield from _events(produced, _timing(started, produced))
        return
    guard = safety.guard()
    attempt = safety.begin_for_run(
        operation_type, run_id=context.run.run_id, tags=context.run.tags, parameters=parameters, guard=guard
    )
    if not attempt.allowed:
        context.log.warning(f"{operation_type} skipped: {attempt.message} (audit {attempt.audit_id})")
        yield dg.AssetObservation(
            asset_key=context.asset_key,
            metadata={
                "skipped": str(attempt.skip_reason),
                "message": attempt.message,
                "audit_id": attempt.audit_id,
            },
        )
        return
    started = time.perf_counter()
    try:
        produced = work()
    except InsufficientInput as error:
        guard.fail(attempt, str(error), reason=error.reason, results=error.metadata)
        raise dg.Failure(
            description=f"{operation_type} FAILED ({error.reason}): {error}",
            metadata={**error.metadata, "reason": error.reason, "audit_id": attempt.audit_id},
        ) from None
    except Exception as error:
        guard.fail(attempt, error)
        raise
    timing = _timing(started, produced)
    guard.succeed(
        attempt,
        results={
            **produced.results,
            "work_duration_ms": timing["duration_ms"],
            "partitions": timing["partitions"],
            "partition_keys": list(produced.values),  # a range run's record accounts for each partition
        },
    )
    timing |= {"audit_id": attempt.audit_id, "trigger_type": attempt.trigger_type.value}
    yield from _events(produced, timing)


def missing_upstream(asset: str, missing: list[str], hint: str) -> InsufficientInput:
    """The failure of an operation whose upstream `asset` lacks the `missing` partitions (listed, capped at 10)."""
    shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
    return InsufficientInput(
        f"{asset} is not materialized for {len(missing)} partition(s): {shown}; {hint}",
        "UPSTREAM_MISSING",
        {"upstream": asset, "missing_partitions": len(missing), "first_missing": missing[0]},
    )


def _timing(started: float, produced: Produced) -> dict[str, Any]:
    duration_ms = round((time.perf_counter() - started) * 1000, 1)
    partitions = max(len(produced.values), 1)
    return {
        "duration_ms": duration_ms,
        "duration_per_partition_ms": round(duration_ms / partitions, 1),
        "partitions": len(produced.values),
    }


def _events(produced: Produced, timing: dict[str, Any]) -> Iterator[dg.Output]:
    keys = list(produced.values)
    if len(keys) == 1:
        yield dg.Output(produced.values, metadata={**produced.metadata[keys[0]], **timing})
        return
    yield dg.Output(
        produced.values,
        metadata={
            **produced.summary,
            **timing,
            "range": f"{keys[0]}...{keys[-1]}" if keys else "",
            "per_partition": dg.MetadataValue.json({key: plain(produced.metadata[key]) for key in keys}),
        },
    )


def plain(metadata: dict[str, Any]) -> dict[str, Any]:
    """The numeric and short text values of one partition's metadata (tables left out)."""
    values = {}
    for name, value in metadata.items():
        raw = value.value if isinstance(value, dg.MetadataValue) else value
        if isinstance(raw, bool | int | float) or (isinstance(raw, str) and len(raw) <= 200):
            values[name] = raw
    return values
