"""The one wrapper every guarded asset runs its work through: guard, storage, timing, metadata.

A guarded operation (docs/design.md#safety) starts with the safety guard: the kill switch is
checked and a RUNNING audit record written before any work (or the record of the
process that launched the run is adopted and re-checked, see `SafetyResource`);
afterwards the record is completed SUCCESS with the results or FAILED with the error.
A refused operation yields no output (assets declare `output_required=False`) and an
`AssetObservation` carrying the reason, so the run ends SUCCESS, downstream steps are
skipped and nothing cascades.

SUCCESS means stored: the operation writes its own outputs through `AssetStorage`
(and, for snapshots, the snapshot store) inside the guarded block, one partition at a
time, and completes the record only once every partition is stored; the asset then
returns a `MaterializeResult` (Dagster's IO manager stores nothing, so nothing is
written after the record is complete). A partition that cannot be stored completes
the record FAILED (reason PERSIST_FAILED, naming the partition and the error) and
fails the step; the partitions stored before it are reported as materialized.
Before storing each partition the kill switch is read again: disabled (or unreadable)
in the middle of a range, the partitions not yet stored are not stored, the record is
completed SKIPPED with the reason, and the stored ones are materialized alone.
The record's `results` list `partitions_stored` and `partitions_skipped`.

Guarded assets never take upstream data as Dagster inputs (an input is loaded before
the asset body, i.e. before the guard): they declare their upstreams as `deps=` and
read them inside `work`, after the guard. Missing upstream data raises
`InsufficientInput` (reason UPSTREAM_MISSING, naming the partitions), which completes
the record FAILED and fails the step with a plain `dg.Failure`.

The audit record's `results` hold the work's results plus `work_duration_ms` (the
time spent computing and storing; the record's own `duration_ms` spans the whole
attempt) and `partitions`.

Every partition records its own metadata, whether it ran alone or in a range (a
single-run backfill): the work's metadata of that key goes to that key's materialization
(`context.add_asset_metadata(..., partition_key=key)`), so the UI's plots over time show
each day's, week's or month's own figures. A range run's own figures, `duration_ms` (the
whole run's work), `duration_per_partition_ms` (that divided by the run's partitions),
`partitions` (how many the run covered) and `range`, go to the run, as tags
`opx/<asset>/<figure>` and a log line, not into any partition's metadata; each partition
carries only which attempt stored it (`audit_id`, `trigger_type`). A run of one partition
keeps its timing in that partition's metadata: there it is the partition's own.

Checks an asset evaluates itself (declared with `check_specs`, e.g. `window_has_outcomes`)
come back from the work per partition (`Produced.checks`) and are recorded against that
partition once it is stored, so a range run leaves no check execution PLANNED.

A skipped operation (kill switch, maintenance window) is visible where the user looks:
the run gets the tags `opx/skipped` (the reason, e.g. KILL_SWITCH_ACTIVE) and
`opx/skip_message`, each partition not stored gets an `AssetObservation` with the reason
and a `note` saying what was skipped, by which run (and backfill), and why, and the run
stays SUCCESS (a skip is not a failure; see docs/assets.md for what Dagster's backfill
page shows). The backfill itself is Dagster's (its daemon writes it): nothing is written on it.

This module stays in `defs/` although it defines no asset: it is the body every guarded
asset's step runs (it reads the `AssetExecutionContext`, writes through the asset
storage, and yields the step's `MaterializeResult`, `AssetObservation` and check
results), so it belongs with the asset definitions rather than with the application
services in `app/`, which launch runs from outside them.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import dagster as dg

from opx_learning.resources.io_managers import AssetStorage
from opx_learning.resources.safety import SafetyResource
from opx_learning.safety.guard import Attempt, Guard
from opx_learning.safety.models import TriggerType

PERSIST_FAILED = "PERSIST_FAILED"
SKIPPED_TAG = "opx/skipped"
SKIP_MESSAGE_TAG = "opx/skip_message"
BACKFILL_TAG = "dagster/backfill"  # the id of the backfill that launched the run (set by Dagster)
Event = dg.MaterializeResult | dg.AssetMaterialization | dg.AssetObservation | dg.AssetCheckEvaluation | dg.Output


@dataclass
class Produced:
    """What an operation's work returns.

    Attributes:
        values: `{partition_key: value}` stored through `AssetStorage` (one file per key).
        metadata: per-partition materialization metadata (that partition's own figures).
        results: JSON-safe results written to the audit record.
        persist: optional `persist(key, value) -> value to store`, called for each partition
            just before it is written (e.g. appending a snapshot to the snapshot store).
        checks: per-partition results of the checks the asset declares itself (`check_specs`).
    """

    values: dict[str, Any]
    metadata: dict[str, dict[str, Any]]
    results: dict[str, Any] = field(default_factory=dict)
    persist: Callable[[str, Any], Any] | None = None
    checks: dict[str, list[dg.AssetCheckResult]] = field(default_factory=dict)


class InsufficientInput(Exception):
    """The operation cannot run on its input (too few outcomes, upstream not materialized): FAILED with a reason."""

    def __init__(self, message: str, reason: str, metadata: dict[str, Any]) -> None:
        super().__init__(message)
        self.reason = reason
        self.metadata = metadata


def run_operation(
    context: dg.AssetExecutionContext,
    safety: SafetyResource | None,
    storage: AssetStorage,
    operation_type: str,
    parameters: dict[str, Any],
    work: Callable[[], Produced],
    *,
    screen: SafetyResource | None = None,
    holds: tuple[dg.AssetKey, str] | None = None,
) -> Iterator[Event]:
    """Run `work` under the guard (`safety=None`: unguarded input stage), store its outputs, yield the asset's events.

    `screen`: for an unguarded stage, the safety resource that holds it back when the late-outcomes
    automation launched the run while the kill switch (or a maintenance window) blocks it.
    `holds`: the guarded asset downstream and its operation; when the same run selects it, the
    hold-back is audited as that operation's SKIPPED attempt (its own step never starts).
    """
    if safety is None:
        if screen is not None:
            trigger, _ = screen.launch_path(context.run.run_id, context.run.tags, context.instance)
            blocked = screen.guard().blocked(operation_type, trigger) if trigger is TriggerType.AUTOMATION else None
            if blocked is not None:
                yield from _held_back(context, screen, blocked, parameters, holds)
                return
        started = time.perf_counter()
        produced = work()
        stored = _Stored(context, storage, produced)
        for key in produced.values:
            error = stored.store(key)
            if error is not None:
                yield from stored.materializations({})
                raise dg.Failure(description=error, metadata={"reason": PERSIST_FAILED}) from None
        yield from _result(context, produced, stored, _timing(started, produced))
        return
    guard = safety.guard()
    attempt = safety.begin_for_run(
        operation_type,
        run_id=context.run.run_id,
        tags=context.run.tags,
        parameters=parameters,
        guard=guard,
        instance=context.instance,
    )
    if not attempt.allowed:
        context.log.warning(f"{operation_type} skipped: {attempt.message} (audit {attempt.audit_id})")
        yield from _skipped(context, attempt.skip_reason, attempt.message, attempt.audit_id, list(context.partition_keys))
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
    yield from _store_guarded(context, guard, attempt, storage, produced, started)


def _held_back(
    context: dg.AssetExecutionContext,
    safety: SafetyResource,
    blocked: tuple[Any, str],
    parameters: dict[str, Any],
    holds: tuple[dg.AssetKey, str] | None,
) -> Iterator[Event]:
    """Skip an input stage the guard blocks; audit the skip as the guarded operation of this run it holds back."""
    reason, message = blocked
    audit_id = "none"
    selected = context.run.asset_selection or set()
    if holds is not None and holds[0] in selected:
        guard = safety.guard()
        attempt = safety.begin_for_run(
            holds[1], run_id=context.run.run_id, tags=context.run.tags, parameters=parameters, guard=guard,
            instance=context.instance,
        )
        if attempt.allowed:  # the block lifted between the two reads: the stage is held back all the same
            guard.skip(attempt, reason, message)
        else:
            reason, message = attempt.skip_reason, attempt.message
        audit_id = attempt.audit_id
        context.log.warning(f"{holds[1]} skipped: {message} (audit {audit_id})")
    else:
        context.log.warning(f"{context.asset_key.to_user_string()} skipped: {message} (input stage: not audited)")
    yield from _skipped(context, reason, message, audit_id, list(context.partition_keys))


def _store_guarded(
    context: dg.AssetExecutionContext,
    guard: Guard,
    attempt: Attempt,
    storage: AssetStorage,
    produced: Produced,
    started: float,
) -> Iterator[Event]:
    """Store each partition after re-checking the kill switch; complete the record from what was stored."""
    stored = _Stored(context, storage, produced)
    keys = list(produced.values)
    for key in keys:
        stop = guard.recheck(attempt)
        if stop is not None:
            reason, message = stop
            outcome = stored.outcome(keys)
            text = f"{message}; stored {len(stored.keys)} of {len(keys)} partition(s) before it"
            guard.skip(replace(attempt, results={**produced.results, **outcome}), reason, text)
            context.log.warning(f"{attempt.operation_type} stopped: {text} (audit {attempt.audit_id})")
            yield from stored.materializations({"audit_id": attempt.audit_id})
            yield from _skipped(context, reason, text, attempt.audit_id, outcome["partitions_skipped"], outcome)
            return
        error = stored.store(key)
        if error is not None:
            guard.fail(attempt, error, reason=PERSIST_FAILED, results={**produced.results, **stored.outcome(keys)})
            yield from stored.materializations({"audit_id": attempt.audit_id})
            raise dg.Failure(
                description=f"{attempt.operation_type} FAILED ({PERSIST_FAILED}): {error}",
                metadata={"reason": PERSIST_FAILED, "audit_id": attempt.audit_id, "partition": key},
            ) from None
    timing = _timing(started, produced)
    guard.succeed(
        attempt,
        results={
            **produced.results,
            "work_duration_ms": timing["duration_ms"],
            "partitions": timing["partitions"],
            "partition_keys": keys,
            **stored.outcome(keys),
        },
    )
    timing |= {"audit_id": attempt.audit_id, "trigger_type": attempt.trigger_type.value}
    yield from _result(context, produced, stored, timing)


class _Stored:
    """The partitions of one operation written so far, and where."""

    def __init__(self, context: dg.AssetExecutionContext, storage: AssetStorage, produced: Produced) -> None:
        self.context = context
        self.storage = storage
        self.produced = produced
        self.keys: list[str] = []
        self.uris: list[str] = []

    def store(self, key: str) -> str | None:
        """Persist one partition; None when stored, else the error text."""
        asset = self.context.asset_key.to_user_string()
        try:
            value = self.produced.values[key]
            if self.produced.persist is not None:
                value = self.produced.persist(key, value)
            uri = self.storage.write(self.context.asset_key, key, value)
        except Exception as error:  # noqa: BLE001 - any storage error fails the operation with its text
            where = self.storage.uri(self.context.asset_key, key, "*")
            return f"{asset} partition {key} could not be stored ({where}): {type(error).__name__}: {error}"
        self.keys.append(key)
        self.uris.append(uri)
        return None

    def outcome(self, keys: list[str]) -> dict[str, list[str]]:
        """`partitions_stored` / `partitions_skipped` for the audit record."""
        done = set(self.keys)
        return {"partitions_stored": list(self.keys), "partitions_skipped": [k for k in keys if k not in done]}

    def materializations(self, extra: dict[str, Any]) -> Iterator[Event]:
        """One materialization per stored partition (for a run that stopped before storing all), and its checks."""
        for key, uri in zip(self.keys, self.uris, strict=True):
            yield dg.AssetMaterialization(
                asset_key=self.context.asset_key,
                partition=key,
                metadata={**self.produced.metadata[key], **extra, "uri": dg.MetadataValue.path(uri)},
            )
        yield from self.check_evaluations()

    def check_evaluations(self) -> Iterator[dg.AssetCheckEvaluation]:
        """The asset's own check results of each stored partition, recorded against that partition."""
        selected = self.context.selected_asset_check_keys
        for key in self.keys:
            for result in self.produced.checks.get(key, []):
                check_key = dg.AssetCheckKey(self.context.asset_key, str(result.check_name))
                if check_key not in selected:
                    continue
                yield dg.AssetCheckEvaluation(
                    asset_key=self.context.asset_key,
                    check_name=check_key.name,
                    passed=result.passed,
                    metadata=result.metadata,
                    severity=result.severity,
                    description=result.description,
                    partition=key,
                )


def _skipped(
    context: dg.AssetExecutionContext,
    reason: Any,
    message: str,
    audit_id: str,
    keys: list[str],
    outcome: dict[str, list[str]] | None = None,
) -> Iterator[Event]:
    """Tag the run with the skip and its reason, and leave the reason and a note on each partition not stored."""
    context.instance.add_run_tags(context.run.run_id, {SKIPPED_TAG: str(reason), SKIP_MESSAGE_TAG: message[:1000]})
    metadata: dict[str, Any] = {
        "skipped": str(reason), "message": message, "audit_id": audit_id,
        "note": skip_note(context, reason, message, audit_id, keys),
    }
    if outcome is not None:
        metadata |= {name: len(done) for name, done in outcome.items()}
    if not keys:
        yield dg.AssetObservation(asset_key=context.asset_key, metadata=metadata)
    for key in keys:
        yield dg.AssetObservation(asset_key=context.asset_key, partition=key, metadata=metadata)
    yield from _restated_checks(context, reason, audit_id, keys)
    yield from _check_outputs(context)


# How many check evaluations (newest first) a skipped run reads back to find the latest real results.
_RESTATE_SCAN = 5000
RESTATED_FROM = "restated_from_run"


def _restated_checks(
    context: dg.AssetExecutionContext, reason: Any, audit_id: str, keys: list[str]
) -> Iterator[dg.AssetCheckEvaluation]:
    """Restate the latest real result of each check this skipped run planned, so the skip hides none of them.

    Dagster shows a check planned by a run that did not evaluate it as "Skipped", in place of its
    last result; the checklist would read blank during an incident. Each (check, partition) the run
    planned and that has a result from an earlier run gets that result again, with the run it came
    from and the skip's reason in its metadata. A check never evaluated stays "Skipped".
    """
    planned = context.instance.get_records_for_run(
        context.run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED, limit=10_000
    ).records
    names = {
        event.check_name
        for event in (record.event_log_entry.dagster_event.event_specific_data for record in planned)
        if event.asset_key == context.asset_key
    }
    if not names:
        return
    wanted = {(name, key) for name in names for key in (keys or [None])}
    found: dict[tuple[str, str | None], tuple[Any, str]] = {}
    with warnings.catch_warnings():
        # Deprecated for Dagster 2.0; the one public read of check evaluations across partitions in 1.x.
        warnings.simplefilter("ignore", DeprecationWarning)
        records = context.instance.get_event_records(
            dg.EventRecordsFilter(event_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION),
            limit=_RESTATE_SCAN,
            ascending=False,
        )
    for record in records:
        evaluation = record.event_log_entry.dagster_event.event_specific_data
        slot = (evaluation.check_name, evaluation.partition)
        if evaluation.asset_key != context.asset_key or slot not in wanted or slot in found:
            continue
        if record.run_id == context.run.run_id:
            continue
        found[slot] = (evaluation, str(evaluation.metadata.get(RESTATED_FROM, dg.TextMetadataValue(record.run_id)).value))
        if len(found) == len(wanted):
            break
    note = f"run {context.run.run_id} was SKIPPED ({reason}, audit {audit_id}) and evaluated nothing"
    for (name, partition), (evaluation, source) in found.items():
        yield dg.AssetCheckEvaluation(
            asset_key=context.asset_key,
            check_name=name,
            passed=evaluation.passed,
            severity=evaluation.severity,
            description=f"{evaluation.description or ''} (last result, from run {source[:8]}; {note})".strip(),
            metadata={**evaluation.metadata, RESTATED_FROM: source, "skipped": str(reason), "skip_note": note},
            partition=partition,
        )


def skip_note(context: dg.AssetExecutionContext, reason: Any, message: str, audit_id: str, keys: list[str]) -> str:
    """What was skipped, by which run (and backfill) and why: the `note` of each skipped partition's observation.

    Dagster counts a partition that a finished backfill run did not materialize as failed (it has
    no "skipped"); the run's tags and this note say why, on the run and on each partition.
    """
    span = f"{keys[0]}..{keys[-1]}" if len(keys) > 1 else (keys[0] if keys else "its partition")
    backfill_id = context.run.tags.get(BACKFILL_TAG)
    launched = f"run {context.run.run_id}" + (f" of backfill {backfill_id}" if backfill_id else "")
    counted = (
        " Dagster counts a backfill's partitions that a finished run did not materialize as failed." if backfill_id else ""
    )
    return (
        f"{reason}: {context.asset_key.to_user_string()} {span} was SKIPPED, not failed: nothing was stored "
        f"({launched}, audit {audit_id}).{counted} Reason: {message}"
    )


def _check_outputs(context: dg.AssetExecutionContext) -> Iterator[dg.Output]:
    """The (empty) outputs of the asset's own selected checks, which Dagster requires of the step."""
    for key in context.selected_asset_check_keys:
        if key.asset_key == context.asset_key:
            yield dg.Output(None, output_name=context.assets_def.get_output_name_for_asset_check_key(key))


def missing_upstream(asset: str, missing: list[str], hint: str) -> InsufficientInput:
    """The failure of an operation whose upstream `asset` lacks the `missing` partitions (listed, capped at 10)."""
    shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
    return InsufficientInput(
        f"{asset} is not materialized for {len(missing)} partition(s): {shown}; {hint}",
        "UPSTREAM_MISSING",
        {"upstream": asset, "missing_partitions": len(missing), "first_missing": missing[0]},
    )


# Which attempt stored a partition: per partition even in a range run (the rest of a range run's figures go to the run).
_PROVENANCE = ("audit_id", "trigger_type")


def _timing(started: float, produced: Produced) -> dict[str, Any]:
    duration_ms = round((time.perf_counter() - started) * 1000, 1)
    partitions = max(len(produced.values), 1)
    return {
        "duration_ms": duration_ms,
        "duration_per_partition_ms": round(duration_ms / partitions, 1),
        "partitions": len(produced.values),
    }


def _result(
    context: dg.AssetExecutionContext, produced: Produced, stored: _Stored, timing: dict[str, Any]
) -> Iterator[Event]:
    """Each partition's own metadata (and file), the run's figures on all of them, then the asset's own checks."""
    keys = list(produced.values)
    multiple = len(keys) > 1
    for key, uri in zip(stored.keys, stored.uris, strict=True):
        own = {**produced.metadata[key], "uri": dg.MetadataValue.path(uri)}
        if multiple:
            context.add_asset_metadata(own, partition_key=key)
        else:
            timing = {**own, **timing}
    if multiple:
        # The run's figures belong to the run, not to each partition's plots: run tags and the log.
        provenance = {name: timing[name] for name in _PROVENANCE if name in timing}
        figures = {name: value for name, value in timing.items() if name not in _PROVENANCE}
        figures["range"] = f"{keys[0]}...{keys[-1]}"
        context.instance.add_run_tags(
            context.run_id, {f"opx/{context.asset_key.path[-1]}/{name}": str(value) for name, value in figures.items()}
        )
        context.log.info(f"{context.asset_key.to_user_string()}: " + ", ".join(f"{k} {v}" for k, v in figures.items()))
        timing = provenance
    yield dg.MaterializeResult(metadata=timing)
    yield from stored.check_evaluations()
    yield from _check_outputs(context)
