"""In-process launches on the instance of `DAGSTER_HOME` (used by the `trigger` and `demo` commands).

Every launch runs a named job of `defs/jobs.py` (the job of exactly those assets, else
the smallest job holding them with the run selecting a subset), so the UI can open the
run's job and re-execute it. A partition range is one run (the
`dagster/asset_partition_range_start` / `_end` tags). Runs are recorded in the instance
`dagster dev` shows, with the checks the assets evaluate themselves; the morning
checklist's checks run in `morning_checklist_job` (`run_checklist`).

The console is quiet by default: Dagster's console logger only prints CRITICAL
events, so an expected failure (e.g. INSUFFICIENT_DATA) does not print a stack trace
before the CLI's own summary. Every event, traces included, is still stored in the
instance for the UI. `verbose=True` prints Dagster's full (DEBUG) console log.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from opx_learning.config import Settings

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
VERBOSE = {"loggers": {"console": {"config": {"log_level": "DEBUG"}}}}


def console(verbose: bool) -> dict[str, Any]:
    """Run config of the console logger: quiet (CRITICAL only) unless `verbose`."""
    return VERBOSE if verbose else QUIET


@dataclass
class RunSummary:
    """What one run did, in plain values (for the CLI's text and JSON output)."""

    run_id: str
    success: bool
    assets: list[str]
    partitions: list[str]
    materialized: dict[str, list[str]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    audit_ids: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (per-partition metadata left out)."""
        return {
            "run_id": self.run_id,
            "success": self.success,
            "assets": self.assets,
            "partitions": [self.partitions[0], self.partitions[-1]] if len(self.partitions) > 1 else self.partitions,
            "partition_count": len(self.partitions),
            "materialized": {asset: len(keys) for asset, keys in self.materialized.items()},
            "skipped": self.skipped,
            "audit_ids": self.audit_ids,
            "failures": self.failures,
            "checks": self.checks,
        }


@functools.lru_cache(maxsize=8)
def definitions(settings: Settings) -> dg.Definitions:
    """The code location of `settings` (`build_defs`), built once per distinct settings."""
    from opx_learning.build import build_defs

    return build_defs(settings)


def materialize(
    settings: Settings,
    instance: dg.DagsterInstance,
    asset_keys: Sequence[str],
    partitions: Sequence[str],
    tags: dict[str, str] | None = None,
    verbose: bool = False,
) -> RunSummary:
    """Materialize `asset_keys` for one partition or one contiguous range in one in-process run of their named job.

    Raises:
        ValueError: no named job holds all of `asset_keys`.
    """
    from opx_learning.defs.jobs import JOB_ASSETS, job_covering
    from opx_learning.defs.sensors import process_tags

    name = job_covering(asset_keys)
    job = definitions(settings).resolve_job_def(name)
    # The pid lets the audit sensor tell a run whose process was killed from a live one.
    run_tags = {**process_tags(), **(tags or {})}
    partition_key = None
    if len(partitions) == 1:
        partition_key = partitions[0]
    elif partitions:
        run_tags |= {RANGE_START: partitions[0], RANGE_END: partitions[-1]}
    if JOB_ASSETS[name] != frozenset(asset_keys):
        # A subset keeps only the selected assets' own checks (the checklist's items run in its own job).
        keys = {dg.AssetKey(key) for key in asset_keys}
        own = {check for key in keys for check in definitions(settings).get_assets_def(key).check_keys}
        job = job.get_subset(asset_selection=keys, asset_check_selection=own)
    result = job.execute_in_process(
        instance=instance,
        partition_key=partition_key,
        tags=run_tags,
        raise_on_error=False,
        run_config=console(verbose),
    )
    return summarize(result, list(asset_keys), list(partitions))


def summarize(result: dg.ExecuteInProcessResult, assets: list[str], partitions: list[str]) -> RunSummary:
    """Collect materializations, skips, audit ids, failures and check results of a run."""
    summary = RunSummary(result.run_id, result.success, assets, partitions)
    audit_ids: set[str] = set()
    for event in result.all_events:
        if event.is_step_materialization:
            materialization = event.step_materialization_data.materialization
            name = materialization.asset_key.to_user_string()
            values = {key: getattr(value, "value", value) for key, value in materialization.metadata.items()}
            if materialization.partition:
                keys = summary.materialized.setdefault(name, [])
                if materialization.partition not in keys:
                    keys.append(materialization.partition)
                summary.metadata.setdefault(name, {})[materialization.partition] = values
            if values.get("audit_id"):
                audit_ids.add(str(values["audit_id"]))
        elif event.event_type_value == "ASSET_OBSERVATION":
            observation = event.event_specific_data.asset_observation
            values = {key: getattr(value, "value", value) for key, value in observation.metadata.items()}
            if "skipped" in values:
                summary.skipped[observation.asset_key.to_user_string()] = str(values["skipped"])
                audit_ids.add(str(values.get("audit_id")))
        elif event.event_type_value == "STEP_SKIPPED" and event.step_key in assets:
            # Dagster skips a step whose upstream step yielded nothing (e.g. skipped by the kill switch).
            summary.skipped.setdefault(event.step_key, "UPSTREAM_SKIPPED")
        elif event.is_step_failure:
            error = event.step_failure_data.user_failure_data
            text = error.description if error and error.description else root_cause(event.step_failure_data.error)
            summary.failures.append(f"{event.step_key}: {text.strip()}")
    for evaluation in result.get_asset_check_evaluations():
        summary.checks.append(check_row(evaluation))
    summary.audit_ids = sorted(audit_ids)
    return summary


def root_cause(error: Any) -> str:
    """The innermost error of a step failure (`Class: message`), not Dagster's wrapper around the op's exception."""
    while error is not None and getattr(error, "cause", None) is not None:
        error = error.cause
    if error is None:
        return "unknown error"
    message = str(error.message).strip()
    name = getattr(error, "cls_name", None)
    return message if not name or message.startswith(f"{name}:") else f"{name}: {message}"


def check_row(evaluation: dg.AssetCheckEvaluation) -> dict[str, Any]:
    """One check evaluation as `{asset, check, status (PASS/WARN/FAIL), description}` (+ `partition` when it has one)."""
    if evaluation.passed:
        status = "PASS"
    else:
        status = "WARN" if evaluation.severity == dg.AssetCheckSeverity.WARN else "FAIL"
    row = {
        "asset": evaluation.asset_key.to_user_string(),
        "check": evaluation.check_name,
        "status": status,
        "description": evaluation.description or "",
    }
    if evaluation.partition:
        row["partition"] = evaluation.partition
    return row


def run_checklist(
    settings: Settings, instance: dg.DagsterInstance, at: str | None = None, verbose: bool = False
) -> list[dict[str, Any]]:
    """Run the morning checklist job as of `at` (ISO-8601, default now); return its items (`opx_learning.core.checklist`)."""
    job = definitions(settings).resolve_job_def("morning_checklist_job")
    tags = {"opx/checklist_at": at} if at else None
    result = job.execute_in_process(instance=instance, raise_on_error=False, tags=tags, run_config=console(verbose))
    return result.output_for_node("morning_checklist") if result.success else []
