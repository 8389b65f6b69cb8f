"""Manual triggers: plan a trigger from its inputs, pass the guard, launch its run, complete its record.

Shared by `opx-learning trigger`, the REST API and its background workers, and the demo.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from opx_learning.app.instance import ensure_dagster_home
from opx_learning.app.queue import FOLLOW_TIMEOUT
from opx_learning.backends import guard_for
from opx_learning.config import Settings
from opx_learning.core.windows import Window, WindowError, iso, to_utc

if TYPE_CHECKING:
    from opx_learning.safety.guard import Attempt, Guard
    from opx_learning.safety.models import AuditRecord

UNGUARDED = ("daily_outcomes", "drift_metrics", "confidence_calibration_by_service")
OPERATIONS = {
    "extract-patterns": "PATTERN_EXTRACTION",
    "calibrate": "CALIBRATION",
    "snapshot": "SNAPSHOT",
}


_PATTERN_ASSETS = {
    "DAILY": ["daily_outcomes", "pattern_summaries_daily"],
    "WEEKLY": ["pattern_summaries_weekly"],
    "CUSTOM": ["pattern_summaries_custom"],
}
_CALIBRATION_ASSETS = {
    "MONTHLY": ["confidence_calibration", "drift_metrics", "confidence_calibration_by_service"],
    "CUSTOM": ["confidence_calibration_custom"],
}


CLI_FIELDS: Mapping[str, str] = {"start": "--start", "end": "--end", "service": "--service", "type": "--type"}
"""How `plan_manual` names the inputs in its messages (the REST API passes its body field names)."""

_KINDS = {
    "extract-patterns": {kind: (assets, kind) for kind, assets in _PATTERN_ASSETS.items()},
    "calibrate": {kind: (assets, kind) for kind, assets in _CALIBRATION_ASSETS.items()},
    "snapshot": {
        "DAILY": (["learning_snapshots_daily"], "DAILY"),
        "WEEKLY": (["learning_snapshots_weekly"], "WEEKLY"),
        "MONTHLY": (["learning_snapshots_monthly"], "MONTHLY"),
        "CUSTOM": (["learning_snapshot_custom"], "CUSTOM"),
    },
}


@dataclass(frozen=True)
class ManualPlan:
    """A checked manual trigger: operation, window, partition type and keys, and the assets of its one run."""

    operation: str
    window: Window
    cadence: str
    assets: tuple[str, ...]
    keys: tuple[str, ...]
    parameters: dict[str, Any]
    service: str | None = None
    note: str | None = None

    @property
    def label(self) -> str:
        """`OPERATION CADENCE: partition K` or `... N partitions FIRST..LAST` (progress and log lines)."""
        shown = f"{len(self.keys)} partitions {self.keys[0]}..{self.keys[-1]}" if len(self.keys) > 1 else f"partition {self.keys[0]}"
        return f"{self.operation} {self.cadence}: {shown}"

    def partitions(self) -> dict[str, Any]:
        """`{type, first, last, count}` of the partitions the run materializes."""
        return {"type": self.cadence, "first": self.keys[0], "last": self.keys[-1], "count": len(self.keys)}

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (handed to a background worker)."""
        return {
            "operation": self.operation,
            "start": self.window.start_iso,
            "end": self.window.end_iso,
            "cadence": self.cadence,
            "assets": list(self.assets),
            "keys": list(self.keys),
            "parameters": self.parameters,
            "service": self.service,
            "note": self.note,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ManualPlan:
        """Inverse of `to_dict`."""
        return cls(
            operation=str(data["operation"]),
            window=Window.parse(data["start"], data["end"]),
            cadence=str(data["cadence"]),
            assets=tuple(data["assets"]),
            keys=tuple(data["keys"]),
            parameters=dict(data["parameters"]),
            service=data.get("service"),
            note=data.get("note"),
        )


def plan_manual(
    command: str,
    start: Any,
    end: Any,
    *,
    kind: str | None = None,
    service: str | None = None,
    fields: Mapping[str, str] = CLI_FIELDS,
    settings: Settings,
) -> ManualPlan:
    """Check a manual trigger and map its range onto partitions (shared by `opx-learning trigger` and the REST API).

    Args:
        command: extract-patterns, calibrate or snapshot.
        start: window start (date, datetime or ISO-8601 string).
        end: window end, exclusive.
        kind: partition type (daily/weekly/custom, monthly/custom, or a snapshot type; any case);
            default: the operation's cadence when the range fits it, else custom (snapshot: custom).
        service: extract-patterns only; must have outcomes in the window.
        fields: names of start, end, service and type used in messages (and optionally `extract`, how to
            extract missing upstream patterns, with `{kind}` for daily/weekly).
        settings: the settings (backend, partitions start).

    Raises:
        InvalidRequest: bad dates, unknown type, a range that does not fit the partitions, a service
            without outcomes, or missing upstream partitions (checked before any rate-limit slot is used).
    """
    from opx_learning.safety.models import InvalidRequest

    operation = OPERATIONS[command]
    window = _window(start, end, fields)
    kinds = _KINDS[command]
    note = None
    if kind is None and command == "extract-patterns":
        kind, note = _choose(window, "DAILY", "days", fields, settings)
    elif kind is None and command == "calibrate":
        kind, note = _choose(window, "MONTHLY", "calendar months", fields, settings)
    kind = str(kind or "CUSTOM").strip().upper()
    if kind not in kinds:
        raise InvalidRequest(f"{fields['type']}: {kind!r} is not one of {', '.join(kinds)}")
    assets, cadence = kinds[kind]
    extra: dict[str, Any] = {}
    if command == "snapshot":
        extra["snapshot_type"] = kind
    if service is not None and command == "extract-patterns":
        service = _check_service(service, window, fields, settings)
        extra["service"] = service
    if cadence == "CUSTOM":
        from opx_learning.defs.partitions import custom_key

        keys = [custom_key(window)]
    else:
        keys = _partition_keys(cadence, window, fields, settings)
    missing = _missing_upstream(assets[0], keys, cadence, settings)
    if missing:
        upstream = "weekly" if cadence == "WEEKLY" else "daily"
        how = fields.get("extract", "`opx-learning trigger extract-patterns --type {kind} --start ... --end ...`")
        raise InvalidRequest(
            f"{fields['start']}/{fields['end']}: {len(missing)} partitions of pattern summaries are missing "
            f"(first {missing[0]}); extract the {upstream} patterns of that range first ({how.format(kind=upstream)})"
        )
    parameters = {"start_date": window.start_iso, "end_date": window.end_iso, "time_window": cadence, **extra}
    return ManualPlan(operation, window, cadence, tuple(assets), tuple(keys), parameters, service, note)



def _window(start: Any, end: Any, fields: Mapping[str, str]) -> Window:
    from opx_learning.safety.models import InvalidRequest

    try:
        return Window.parse(start, end)
    except WindowError as error:
        field, _, detail = str(error).partition(": ")
        raise InvalidRequest(f"{fields[field]}: {detail}" if field in ("start", "end") else str(error)) from None


def _partitions(settings: Settings) -> Any:
    from opx_learning.defs.location import partitions_for

    return partitions_for(settings.partitions_start)


def _choose(
    window: Window, cadence: str, unit: str, fields: Mapping[str, str], settings: Settings
) -> tuple[str, str | None]:
    """The default partition type of a trigger: `cadence` when the range fits it, else CUSTOM (with a note)."""
    from opx_learning.defs.partitions import custom_key, whole

    if whole(_partitions(settings).cadence[cadence], window):
        return cadence, None
    note = (
        f"{window.start_iso}..{window.end_iso} is not whole {unit}: running it as one custom window "
        f"{custom_key(window)} ({cadence.lower()} partitions need a range of whole {unit})"
    )
    return "CUSTOM", note


def _check_service(service: str, window: Window, fields: Mapping[str, str], settings: Settings) -> str:
    """The trimmed service, which must have outcomes in the window (checked before any rate-limit slot)."""
    import polars as pl

    from opx_learning.safety.models import InvalidRequest
    from opx_learning.stores.outcomes import outcome_store

    name = service.strip()
    if not name:
        raise InvalidRequest(f"{fields['service']}: {service!r} is empty; name a service, or leave {fields['service']} out")
    frame = outcome_store(settings).scan(window).select(pl.col("service").str.strip_chars()).unique().collect()
    services = sorted(value for value in frame["service"].to_list() if value)
    if name not in services:
        shown = f"{window.start_iso}..{window.end_iso}"
        known = f"services with outcomes there: {', '.join(services)}" if services else "no service has outcomes there"
        raise InvalidRequest(f"{fields['service']}: {service!r} has no outcomes in {shown}; {known}")
    return name


def _partition_keys(cadence: str, window: Window, fields: Mapping[str, str], settings: Settings) -> list[str]:
    from opx_learning.defs.partitions import keys_in_window, partition_window
    from opx_learning.safety.models import InvalidRequest

    first_day = settings.partitions_start.isoformat()
    partitions_def = _partitions(settings).cadence[cadence]
    keys = keys_in_window(partitions_def, window)
    unit = {"DAILY": "days", "WEEKLY": "Sunday-to-Sunday weeks", "MONTHLY": "calendar months"}[cadence]
    shown = f"{window.start_iso}..{window.end_iso}"
    both = f"{fields['start']}/{fields['end']}"
    custom = f"use {fields['type']} custom"
    if window.start < to_utc(first_day):
        raise InvalidRequest(f"{fields['start']}: {window.start_iso} is before the first partition ({first_day}); "
                             f"{custom} for an earlier window")
    if not keys:
        raise InvalidRequest(f"{both}: {shown} holds no complete {unit} (a partition exists once its window ended)")
    first, last = partition_window(partitions_def, keys[0]), partition_window(partitions_def, keys[-1])
    if first.start != window.start or last.end != window.end:
        raise InvalidRequest(
            f"{both}: {shown} does not cover whole, complete {unit} "
            f"(nearest: {first.start_iso}..{last.end_iso}); {custom} for any window"
        )
    return keys


def _missing_upstream(asset: str, keys: list[str], cadence: str, settings: Settings) -> list[str]:
    from opx_learning.defs.partitions import keys_in_window, partition_window

    if asset not in ("learning_snapshots_daily", "learning_snapshots_weekly", "learning_snapshots_monthly"):
        return []
    import dagster as dg

    upstream = "pattern_summaries_weekly" if cadence == "WEEKLY" else "pattern_summaries_daily"
    needed = keys
    if cadence == "MONTHLY":
        parts = _partitions(settings)
        partitions_def = parts.cadence[cadence]
        window = Window(partition_window(partitions_def, keys[0]).start, partition_window(partitions_def, keys[-1]).end)
        needed = keys_in_window(parts.daily, window)
    with dg.DagsterInstance.from_config(str(ensure_dagster_home(settings))) as instance:
        done = instance.get_materialized_partitions(dg.AssetKey(upstream))
    return [key for key in needed if key not in done]


def launch_manual(
    plan: ManualPlan,
    audit_id: str,
    token: str,
    *,
    settings: Settings,
    verbose: bool = False,
    guard: Guard | None = None,
    wait: bool = True,
    timeout: float = FOLLOW_TIMEOUT,
    progress: Callable[[str], None] | None = None,
    instance: Any = None,
) -> tuple[Any, AuditRecord | None]:
    """Run a planned trigger in one run adopting `audit_id`; FAILED if the run left the record RUNNING.

    On the embedded instance the run executes in this process; on an instance whose run
    coordinator queues, it is submitted to the queue and followed (`launch_adopting`).

    Args:
        plan: the checked trigger.
        audit_id: the RUNNING record begun `adoptable` for it.
        token: that attempt's `adoption_token` (the run presents it to adopt the record).
        settings: the settings of the code location the run belongs to.
        verbose: print Dagster's own log (in-process runs).
        guard: reuse a guard.
        wait: follow a queued run until it finishes (False: return once it is enqueued).
        timeout: seconds to follow a queued run.
        progress: gets a line per status change of a queued run.
        instance: the Dagster instance (default: DAGSTER_HOME's).

    Returns:
        The run's `launch.RunSummary` and the audit record as the run left it.
    """
    import dagster as dg

    from opx_learning.defs.location import CUSTOM_WINDOWS

    instance = instance or dg.DagsterInstance.from_config(str(ensure_dagster_home(settings)))
    if plan.cadence == "CUSTOM":
        new = [key for key in plan.keys if not instance.has_dynamic_partition(CUSTOM_WINDOWS, key)]
        try:
            if new:
                instance.add_dynamic_partitions(CUSTOM_WINDOWS, new)
        except Exception:
            # A concurrent trigger of the same window may add the key between the check and the insert.
            if not all(instance.has_dynamic_partition(CUSTOM_WINDOWS, key) for key in new):
                raise
    return launch_adopting(instance, plan.assets, plan.keys, audit_id, token, guard=guard or guard_for(settings),
                           settings=settings, trigger_type="MANUAL", verbose=verbose, wait=wait, timeout=timeout,
                           progress=progress)


def launch_adopting(
    instance: Any,
    assets: Sequence[str],
    keys: Sequence[str],
    audit_id: str,
    token: str,
    *,
    guard: Guard,
    settings: Settings,
    trigger_type: str,
    tags: Mapping[str, str] | None = None,
    verbose: bool = False,
    wait: bool = True,
    timeout: float = FOLLOW_TIMEOUT,
    progress: Callable[[str], None] | None = None,
) -> tuple[Any, AuditRecord | None]:
    """One run of `assets` over `keys` that adopts `audit_id`, then the record FAILED if the run ended leaving it RUNNING.

    The embedded instance runs it in this process. An instance whose run coordinator queues
    gets it submitted (`submit_adopting`) and followed until it finishes; a run not finished
    (not waited for, or past `timeout`) leaves its record to the run.

    Args:
        instance: the Dagster instance.
        assets: asset keys of one named job.
        keys: one partition, or the keys of one range.
        audit_id: the RUNNING record begun `adoptable`.
        token: its adoption token.
        guard: the guard of the record's store.
        trigger_type: MANUAL or BACKFILL (the `opx/trigger_type` tag of a queued run).
        tags: further run tags.
        verbose: print Dagster's own log (in-process runs).
        wait: follow a queued run.
        timeout: seconds to follow a queued run.
        progress: gets a line per status change of a queued run.

    Returns:
        The run's `launch.RunSummary` (`success` False for a run not finished) and the audit record.
    """
    from opx_learning.app import launch, queue
    from opx_learning.resources.safety import ADOPTION_TOKEN_TAG, AUDIT_ID_TAG

    if not queue.queues(instance, settings.launch):
        adoption = {AUDIT_ID_TAG: audit_id, ADOPTION_TOKEN_TAG: token, **(tags or {})}
        summary = launch.materialize(settings, instance, list(assets), list(keys), adoption, verbose)
    else:
        run_id = submit_adopting(instance, assets, keys, audit_id, token, guard=guard, trigger_type=trigger_type,
                                 tags=tags, location=settings.dagster_location)
        run = queue.follow(instance, run_id, timeout=timeout, progress=progress) if wait else None
        if run is None:
            status = instance.get_run_by_id(run_id).status.value
            summary = launch.RunSummary(run_id, False, list(assets), list(keys))
            if wait:
                summary.failures.append(f"run {run_id} is still {status} after {timeout:.0f} s; it goes on")
            return summary, guard.audit.get(audit_id)
        stored = queue.StoredRun(instance, run)
        summary = launch.summarize(stored, list(assets), list(keys))  # type: ignore[arg-type]
        failure = stored.run_failure()
        if not summary.success and not summary.failures and failure:
            summary.failures.append(failure)
    reason = "; ".join(summary.failures) or "the run ended before the operation started"
    return summary, fail_running(guard, audit_id, f"run {summary.run_id} failed: {reason}")


def submit_adopting(
    instance: Any,
    assets: Sequence[str],
    keys: Sequence[str],
    audit_id: str,
    token: str,
    *,
    guard: Guard,
    trigger_type: str,
    tags: Mapping[str, str] | None = None,
    location: str = "opx_learning.definitions",
) -> str:
    """Submit one run of `assets` over `keys` to the instance's run coordinator, reserved to adopt `audit_id`.

    The record is reserved for the new run's id before the run exists, so the token the run
    carries in its tags (readable in the instance's storage and the UI while the run waits)
    adopts the record for that run only. A submission that fails completes the record FAILED.

    Returns:
        The run id.
    """
    from opx_learning.app import queue
    from opx_learning.defs.jobs import job_for_assets
    from opx_learning.resources.safety import ADOPTION_TOKEN_TAG, AUDIT_ID_TAG

    run_id = str(uuid.uuid4())  # a run id as Dagster makes one
    guard.reserve(audit_id, run_id=run_id, token=token)
    run_tags = {**(tags or {}), queue.TRIGGER_TYPE_TAG: trigger_type, AUDIT_ID_TAG: audit_id, ADOPTION_TOKEN_TAG: token}
    try:
        return queue.submit_job(instance, job_for_assets(assets), list(keys), run_tags, run_id=run_id,
                                location=location)
    except Exception as error:
        fail_running(guard, audit_id, f"the run could not be submitted to the queue: {type(error).__name__}: {error}")
        raise


def run_checklist(
    settings: Settings,
    instance: Any,
    at: str | None = None,
    verbose: bool = False,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Run the morning checklist job as of `at` (in this process, or through the queue of a queuing instance); its rows."""
    from opx_learning.app import launch, queue

    if not queue.queues(instance, settings.launch):
        return launch.run_checklist(settings, instance, at, verbose)
    tags = {"opx/checklist_at": at} if at else {}
    run_id = queue.submit_job(instance, "morning_checklist_job", [], tags, location=settings.dagster_location)
    run = queue.follow(instance, run_id, progress=progress)
    if run is None:
        raise TimeoutError(f"the morning checklist run {run_id} did not finish")
    return [launch.check_row(evaluation) for evaluation in queue.StoredRun(instance, run).get_asset_check_evaluations()]


def fail_running(guard: Guard, audit_id: str, error: str) -> AuditRecord | None:
    """Complete a manual attempt still RUNNING as FAILED; return the record (as found when already completed)."""
    from opx_learning.safety.guard import Attempt
    from opx_learning.safety.models import AuditStatus, AuditTransitionError

    record = guard.audit.get(audit_id)
    if record is None or record.status is not AuditStatus.RUNNING:
        return record
    attempt = Attempt(audit_id, True, None, record.operation_type, record.trigger_type, record.triggered_by,
                      record.parameters, error, run_id=record.run_id, record=record)
    try:
        return guard.fail(attempt, error)
    except AuditTransitionError:  # completed meanwhile by the run or the audit sensor (RUN_TERMINATED)
        return guard.audit.get(audit_id)


def begin_manual(
    operation: str,
    principal_name: str | None,
    parameters: Mapping[str, Any],
    *,
    settings: Settings,
    emergency: bool = False,
    guard: Guard | None = None,
) -> Attempt:
    """Decide a manual trigger: resolve the principal, then ask the guard for a rate-limited, adoptable MANUAL attempt.

    Raises:
        InvalidRequest: bad parameters or principals file (the CLI shows it as a usage error).
    """
    from opx_learning.safety.principals import resolve_principal

    principal = resolve_principal(principal_name, settings=settings)
    guard = guard or guard_for(settings)
    return guard.begin(operation, "MANUAL", principal, parameters, emergency=emergency, rate_limited=True,
                       adoptable=True)



def refusal_text(attempt: Attempt, emergency_denied: str | None = None) -> str:
    """One sentence saying why a trigger was refused (with the retry time for a rate limit), then its audit id."""
    reason = str(attempt.skip_reason)
    limit = attempt.rate_limit
    if limit is not None and not limit.allowed:
        at = iso(datetime.now(UTC) + timedelta(seconds=limit.retry_after))
        why = (
            f"{attempt.principal.principal} may start {limit.limit} {attempt.operation_type} per hour; "
            f"retry in {limit.retry_after} s (after {at})"
        )
    else:
        # The guard's message starts with the reason, which the prefix already names.
        why = attempt.message.removeprefix(f"{reason}: ").rstrip(".")
    denied = f" ({emergency_denied})" if emergency_denied else ""
    audited = f"Audit id {attempt.audit_id}" if attempt.audited else "Not audited: the audit trail is unavailable"
    return f"refused ({reason}): {why}{denied}. {audited}"


def service_report(summary: Any, asset: str, service: str, settings: Settings) -> dict[str, Any]:
    """Totals of one service over the partitions a run materialized of `asset` (read back from storage)."""
    from opx_learning.backends import backend_for

    storage = backend_for(settings).asset_storage()
    total = fp = 0
    for key in summary.materialized.get(asset, []):
        frame = storage.read(asset, key)
        if frame is None or not hasattr(frame, "filter"):
            continue
        import polars as pl

        rows = frame.filter(pl.col("service") == service)
        total += int(rows["total_incidents"].sum() or 0)
        fp += int(rows["false_positives"].sum() or 0)
    return {"service": service, "total_incidents": total, "false_positives": fp, "fp_rate": fp / total if total else None}


