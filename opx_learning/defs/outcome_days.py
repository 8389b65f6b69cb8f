"""`outcome_days`: the outcome store's days as an observable source asset, one data version per day.

Each stored UTC day of outcomes is one partition of `outcome_days` (daily, like
`daily_outcomes`, which depends on it), whose data version is the SHA-256 of that day's
file: the manifest's latest row for it (docs/integrity.md), else the file's own digest.
Dagster records, on every `daily_outcomes` materialization, the version of the day it
read; when an observation later reports another version for that day, the UI shows that
`daily_outcomes` partition as unsynced (Dagster's own stale status stops there: the
partitions computed from it are listed by `opx-learning status`), and the late-outcomes
automation (`defs/automation.py`) refreshes it and everything computed from it.

An observation reports only the days whose version differs from the last one observed
(the first observation reports every stored day), so observing often writes nothing
when nothing changed, and ingesting a day's content again changes no version.
Observers: `opx-learning ingest` and the demo after writing, the job
`outcome_days_observation_job`, and its schedule `outcome_days_observation_schedule`
(every 10 minutes, STOPPED by default like every schedule), for writers that do not go
through `ingest`. An observation is a read-only look at the store, not a learning
operation: it is not audited and not held back by the kill switch.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import dagster as dg

from opx_learning.defs import beta
from opx_learning.defs.location import Location
from opx_learning.defs.monitors import heartbeat

OUTCOME_DAYS = "outcome_days"
OBSERVATION_JOB = "outcome_days_observation_job"
OBSERVATION_SCHEDULE = "outcome_days_observation_schedule"
OBSERVED_BY_TAG = "opx/observed_by"
# The tag under which Dagster stores an observation's data version.
DATA_VERSION_TAG = "dagster/data_version"
_PAGE = 1000


def asset_records(instance: dg.DagsterInstance, key: dg.AssetKey, *, observations: bool) -> Iterator[dg.EventLogRecord]:
    """Every observation (or materialization) record of `key`, newest first, read a page at a time."""
    fetch = instance.fetch_observations if observations else instance.fetch_materializations
    cursor = None
    while True:
        page = fetch(dg.AssetRecordsFilter(asset_key=key), limit=_PAGE, cursor=cursor)
        yield from page.records
        if not page.has_more:
            return
        cursor = page.cursor


def data_version(record: dg.EventLogRecord) -> str | None:
    """The data version an observation record carries, if any."""
    observation = record.asset_observation
    return (observation.tags or {}).get(DATA_VERSION_TAG) if observation is not None else None


def observed_versions(instance: dg.DagsterInstance, key: dg.AssetKey) -> dict[str, str]:
    """The latest observed data version of each partition of `key` (partitions never observed are absent)."""
    latest: dict[str, str] = {}
    for record in asset_records(instance, key, observations=True):
        version = data_version(record)
        if record.partition_key and version and record.partition_key not in latest:
            latest[record.partition_key] = version
    return latest


def changed_versions(
    current: Mapping[str, str], observed: Mapping[str, str], partitions_def: dg.TimeWindowPartitionsDefinition
) -> dict[str, str]:
    """The days (existing partitions only) whose current version differs from the last observed one."""
    keys = set(partitions_def.get_partition_keys())
    return {day: version for day, version in sorted(current.items()) if day in keys and observed.get(day) != version}


def waiting_days(instance: dg.DagsterInstance, source: dg.AssetKey, computed: dg.AssetKey) -> set[str]:
    """The days of `computed` materialized before the newest observed version of their day in `source`."""
    observed = _latest_storage_ids(instance, source, observations=True)
    materialized = _latest_storage_ids(instance, computed, observations=False)
    return {day for day, done in materialized.items() if observed.get(day, -1) > done}


def _latest_storage_ids(instance: dg.DagsterInstance, key: dg.AssetKey, *, observations: bool) -> dict[str, int]:
    """The storage id of the newest observation (or materialization) of each partition of `key`."""
    latest: dict[str, int] = {}
    for record in asset_records(instance, key, observations=observations):
        if record.partition_key and record.partition_key not in latest:
            latest[record.partition_key] = record.storage_id
    return latest


def build_outcome_days(loc: Location) -> tuple[dg.SourceAsset, dg.UnresolvedAssetJobDefinition]:
    """The `outcome_days` observable source asset of one location and the job that observes it."""
    n, daily = loc.names, loc.partitions.daily

    @beta.observable_source_asset(
        name=OUTCOME_DAYS,
        key_prefix=n.key_prefix,
        partitions_def=daily,
        required_resource_keys=n.required("outcome_store"),
        group_name="outcomes",
        description="The outcome store's UTC days; each day's data version is the SHA-256 of its stored file "
        "(observed by ingest and outcome_days_observation_schedule).",
    )
    def outcome_days(context: dg.OpExecutionContext) -> dg.DataVersionsByPartition:
        """Report the days whose content changed since the last observation, each with its file's SHA-256."""
        store = n.resources(context).outcome_store.store()
        current = {day: version.sha256 for day, version in store.day_versions().items()}
        changed = changed_versions(current, observed_versions(context.instance, n.key(OUTCOME_DAYS)), daily)
        shown = ", ".join(list(changed)[:10]) + (f" and {len(changed) - 10} more" if len(changed) > 10 else "")
        context.log.info(f"{len(current)} stored day(s), {len(changed)} changed since the last observation"
                         + (f": {shown}" if changed else ""))
        with beta.quiet_beta():
            return dg.DataVersionsByPartition({day: dg.DataVersion(version) for day, version in changed.items()})

    job = dg.define_asset_job(
        n(OBSERVATION_JOB),
        selection=dg.AssetSelection.assets(n.key(OUTCOME_DAYS)),
        description="Observe the outcome store: a new data version for each day whose stored content changed.",
    )
    return outcome_days, job


def build_observation_schedule(loc: Location, job: Any) -> dg.ScheduleDefinition:
    """Every 10 minutes, observe the outcome store (STOPPED by default)."""
    name = loc.names(OBSERVATION_SCHEDULE)

    @dg.schedule(
        name=name,
        cron_schedule="*/10 * * * *",
        job=job,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description="Observe the outcome store every 10 minutes: days written without `opx-learning ingest` get "
        "their new data version (read-only, not audited).",
    )
    @heartbeat(name, loc.settings)
    def outcome_days_observation_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        return dg.RunRequest(tags={OBSERVED_BY_TAG: "schedule"})

    return outcome_days_observation_schedule
