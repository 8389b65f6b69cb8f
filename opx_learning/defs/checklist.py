"""What the morning checklist's rules (`opx_learning.core.checklist`) read, from Dagster and the stores.

The rules are Dagster-free; `Context` is their `Readings` in a code location: the
location's partitions and their windows, the Dagster instance's latest materialization
metadata, the audit trail, the asset storage and outcome store, the alert rules, the
integrity sweep and the monitors. `digest_alert` makes the rules' digest the `Alert`
the 09:00 schedule publishes. The checks, job and schedule are in `defs/checks.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import dagster as dg
import polars as pl

from opx_learning.alerts import rules
from opx_learning.alerts.models import Alert
from opx_learning.core.checklist import DAY, TREND_WEEKS, WEEK, ItemResult, digest
from opx_learning.core.windows import Window
from opx_learning.defs.location import Names, partitions_for
from opx_learning.defs.outcomes import read_outcomes
from opx_learning.defs.partitions import last_complete_key, partition_window
from opx_learning.safety.models import LEARNING_OPERATIONS, AuditRecord, OperationType


@dataclass
class Context:
    """What items read: the evaluation time, the Dagster instance, the audit trail and the stores."""

    at: datetime
    instance: dg.DagsterInstance
    audit: Any
    asset_storage: Any
    outcome_store: Any
    settings: Any = None
    integrity: Callable[[Window], Any] | None = None
    names: Names = field(default_factory=Names)
    _records: list[AuditRecord] | None = None

    @property
    def cadences(self) -> dict[str, dg.TimeWindowPartitionsDefinition]:
        """The location's daily, weekly and monthly partitions."""
        return partitions_for(self.settings.partitions_start).cadence

    def period_key(self, cadence: str) -> str | None:
        """The partition an item of `cadence` evaluates at `at`: the last complete day, week or month."""
        return last_complete_key(self.cadences[cadence], self.at)

    def window(self, cadence: str, key: str) -> Window:
        """The window of partition `key` of `cadence`."""
        return partition_window(self.cadences[cadence], key)

    def latest(self, asset: str, partition: str) -> dict[str, Any] | None:
        """Metadata of the latest materialization of the location's `asset` for `partition`."""
        return latest_metadata(self.instance, self.names.key(asset), partition)

    def stored(self, asset: str, partition: str) -> Any:
        """The stored value of `asset` for `partition` (asset storage)."""
        return self.asset_storage.read(asset, partition)

    def outcomes(self, window: Window) -> pl.DataFrame:
        """The valid outcomes of `window` (materialized `daily_outcomes`, else the outcome store validated)."""
        return read_outcomes(self.asset_storage, self.outcome_store, window)

    def records(self, since: datetime, until: datetime | None = None) -> list[AuditRecord]:
        """Learning-operation records started in `[since, until or at)`, read once for the 5 weeks before `at`."""
        if self._records is None:
            start = self.at - WEEK * (TREND_WEEKS + 1) - DAY
            self._records = [r for r in self.audit.query(since=start, until=self.at) if r.operation_type in LEARNING_OPERATIONS]
        end = until or self.at
        return [r for r in self._records if since <= r.start_time < end]

    def attempts(self, operation: str, since: datetime) -> list[AuditRecord]:
        """Audit records of `operation` started at or after `since`, newest first."""
        return self.audit.query(operation_type=OperationType(operation), since=since)

    def alarms(self, records: list[Any], history: list[Any]) -> list[Alert]:
        """The alerts the alert rules raise for `records` (with `history`) at `at`."""
        return rules.evaluate(records, history=history, now=self.at)

    def drift_alarm(self, record: Any) -> Alert | None:
        """The DRIFT alert of a calibration's audit record, or None."""
        return rules.drift_alert(record)

    def integrity_report(self, days: int) -> Any:
        """The integrity sweep over the `days` before `at` (through `integrity` when given)."""
        from opx_learning.integrity.sweep import default_window, sweep

        window = default_window(days, self.at)
        return self.integrity(window) if self.integrity is not None else sweep(window, self.settings)

    def monitors(self) -> tuple[str, str, dict[str, Any]]:
        """PASS / WARN / FAIL of the sensors' and schedules' ticks (`defs.monitors.monitors_summary`), figure, metadata."""
        from opx_learning.alerts.publishers import alert_publisher
        from opx_learning.defs.monitors import monitors_summary

        publisher = alert_publisher(self.settings)
        return monitors_summary(self.instance, publisher, self.at, self.settings)


    def late_pending(self) -> list[dict[str, Any]]:
        """The computed partitions late outcomes left pending (`opx_learning.app.late.pending_partitions`)."""
        from opx_learning.app.late import pending_partitions

        prefix = self.names.prefix or None
        return [p.to_dict() for p in pending_partitions(self.settings, self.instance, key_prefix=prefix)]


def latest_metadata(instance: dg.DagsterInstance, asset_key: dg.AssetKey | str, partition: str) -> dict[str, Any] | None:
    """Metadata values of a partition's latest materialization (its own numbers for a range run), or None."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey.from_coercible(asset_key), asset_partitions=[partition]), limit=1
    ).records
    if not records or records[0].asset_materialization is None:
        return None
    values = {name: value.value for name, value in records[0].asset_materialization.metadata.items()}
    own = (values.get("per_partition") or {}).get(partition)
    values["materialized_at"] = records[0].timestamp
    return {**values, **own} if isinstance(own, dict) else values


def digest_alert(results: list[ItemResult], at: datetime) -> Alert:
    """The one alert a checklist sends (`opx_learning.core.checklist.digest`), as an `Alert` to publish."""
    found = digest(results, at)
    return Alert(found.alarm, found.severity, found.operation, found.details, raised_at=found.raised_at, key=found.key)
