"""The backends: the one module where `settings.backend` picks stores, publishers and clients.

`backend_for(settings)` returns the `LocalBackend` or the `AwsBackend` of the settings; each
builds, from the settings' values alone, everything that differs between the two:

| what | local | aws |
| --- | --- | --- |
| outcome store | Parquet under `<home>/outcomes` | Parquet under `outcomes_s3_uri`, else the DynamoDB table |
| snapshot store | `<home>/snapshots` | `<assets_s3_uri>/snapshots/` (local without `assets_s3_uri`) |
| audit trail, kill switch, rate limiter | SQLite `<home>/state.db` | DynamoDB audit and config tables |
| threshold store | SQLite `<home>/state.db` | DynamoDB config table |
| alert publisher | `<home>/alerts.jsonl` | the SNS FIFO topic |
| metrics sink | none | CloudWatch (also the guard's completion hook) |
| caller identity | the OS user | the STS caller identity |
| audit sweep | read-only SQLite | the DynamoDB `OperationTypeIndex` |
| manifest of stored objects | SQLite `<home>/state.db` | DynamoDB config table |

Everything else receives these objects (or the settings they are built from) as arguments:
no other module reads the environment or compares the backend's name. The modules named
in the table import this one lazily, so it may import them at the top of a function.
"""

from __future__ import annotations

import getpass
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from opx_learning.config import Settings

if TYPE_CHECKING:
    from opx_learning.alerts.metrics import MetricsSink
    from opx_learning.alerts.publishers import AlertPublisher
    from opx_learning.core.windows import Window
    from opx_learning.integrity.manifest import Ledger, Manifest
    from opx_learning.resources.io_managers import AssetStorage
    from opx_learning.safety.audit import AuditLog
    from opx_learning.safety.kill_switch import KillSwitchStore
    from opx_learning.safety.models import AuditRecord
    from opx_learning.safety.rate_limit import RateLimiter
    from opx_learning.safety.threshold_store import ThresholdStore
    from opx_learning.stores.outcomes import OutcomeStore
    from opx_learning.stores.snapshots import SnapshotStore


class Backend(ABC):
    """What one backend builds from `settings`; `backend_for` picks the class.

    Args:
        settings: the configuration (its `backend` names this class).
    """

    name: ClassVar[str]
    cloud_monitoring: ClassVar[bool] = False
    """Whether CloudWatch and SNS exist for this backend (`opx-learning monitoring deploy`)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @abstractmethod
    def outcome_store(self) -> OutcomeStore:
        """The outcome store of this backend."""

    @abstractmethod
    def snapshot_store(self) -> SnapshotStore:
        """The append-only snapshot store of this backend."""

    @abstractmethod
    def safety_stores(self, *, create: bool = False) -> tuple[AuditLog, KillSwitchStore, RateLimiter]:
        """The audit trail, kill switch store and rate limiter (limits from `settings.rate_limits`).

        Args:
            create: create a missing local state file (only when initialising it).

        Raises:
            InvalidRequest: `rate_limits` is malformed (the message names `OPX_RATE_LIMITS`).
        """

    @abstractmethod
    def threshold_store(self) -> ThresholdStore:
        """Where threshold proposals and approved versions live."""

    @abstractmethod
    def alert_publisher(self, **kwargs: Any) -> AlertPublisher:
        """The alert publisher (`kwargs`: `max_attempts`, `backoff_seconds`, `sleep`)."""

    @abstractmethod
    def metrics_sink(self) -> MetricsSink:
        """Where completed audit records and heartbeats are published as metrics."""

    def completion_hook(self) -> Callable[[AuditRecord], None] | None:
        """The guard's hook for each completed record (None: nothing to publish)."""
        return None

    @abstractmethod
    def caller_identity(self) -> str:
        """The principal of a caller that names none (the OS user, or the AWS caller identity)."""

    @property
    @abstractmethod
    def state_file(self) -> Path | None:
        """The local state database that `init --force` may move aside when damaged (None: no file)."""

    @property
    @abstractmethod
    def alert_target(self) -> str:
        """Where alerts go, for messages (the alerts file, or the SNS topic)."""

    @abstractmethod
    def sweep_audit(self, window: Window, report: Any, counter: Any) -> None:
        """Re-read the audit records of `window` into the integrity sweep's `report` (see `integrity.sweep`)."""

    def blob_client(self) -> Any:
        """A boto3 S3 client for the settings' region (asset, outcome and snapshot objects on S3)."""
        from opx_learning.stores.blobs import s3_client

        return s3_client(self.settings.region)

    @abstractmethod
    def manifest(self) -> Manifest:
        """The manifest of stored objects (docs/integrity.md)."""

    def ledger(self, store: str, base: str | Path) -> Ledger:
        """Manifest-checked writes and reads of one store under `base`."""
        from opx_learning.integrity.manifest import Ledger

        return Ledger(self.manifest(), store, base, settings=self.settings)

    def ledgers(self) -> list[Ledger]:
        """The manifest checks of every store of files: assets, snapshots and (unless on DynamoDB) outcomes."""
        from opx_learning.stores.outcomes import DynamoOutcomeStore

        found = [self.asset_storage().ledger(), self.snapshot_store().ledger]
        outcomes = self.outcome_store()
        if not isinstance(outcomes, DynamoOutcomeStore):
            found.append(outcomes.ledger)  # type: ignore[attr-defined]
        return found

    @abstractmethod
    def asset_storage(self) -> AssetStorage:
        """The asset files under `settings.assets_base`, recorded in and checked against the manifest."""


class LocalBackend(Backend):
    """Everything under the home: Parquet and JSON files, the SQLite state database, `alerts.jsonl`."""

    name = "local"

    def outcome_store(self) -> OutcomeStore:
        """Day-partitioned Parquet under `<home>/outcomes`."""
        from opx_learning.integrity.manifest import OUTCOMES
        from opx_learning.stores.outcomes import LocalOutcomeStore

        root = self.settings.outcomes_dir
        return LocalOutcomeStore(root, ledger=self.ledger(OUTCOMES, root))

    def snapshot_store(self) -> SnapshotStore:
        """Snapshots under `<home>/snapshots`."""
        from opx_learning.integrity.manifest import SNAPSHOTS
        from opx_learning.stores.snapshots import SnapshotStore

        return SnapshotStore(settings=self.settings, ledger=self.ledger(SNAPSHOTS, self.settings.home / "snapshots"))

    def safety_stores(self, *, create: bool = False) -> tuple[AuditLog, KillSwitchStore, RateLimiter]:
        """The SQLite stores of `<home>/state.db`."""
        from opx_learning.safety.rate_limit import parse_limits
        from opx_learning.safety.sqlite_backend import open_sqlite

        return open_sqlite(self.settings.state_db, limits=parse_limits(self.settings.rate_limits), create=create)

    def threshold_store(self) -> ThresholdStore:
        """Two append-only tables of `<home>/state.db`."""
        from opx_learning.safety.sqlite_backend import SqliteState
        from opx_learning.safety.threshold_store import SqliteThresholdStore

        return SqliteThresholdStore(SqliteState(self.settings.state_db))

    def alert_publisher(self, **kwargs: Any) -> AlertPublisher:
        """Alerts appended to `<home>/alerts.jsonl` (and logged)."""
        from opx_learning.alerts.publishers import LocalAlertPublisher

        return LocalAlertPublisher(self.settings.alerts_file, **kwargs)

    def metrics_sink(self) -> MetricsSink:
        """Nothing to publish locally."""
        from opx_learning.alerts.metrics import NullMetrics

        return NullMetrics()

    def caller_identity(self) -> str:
        """The OS user."""
        return getpass.getuser()

    @property
    def state_file(self) -> Path:
        """`<home>/state.db`."""
        return self.settings.state_db

    @property
    def alert_target(self) -> str:
        """The alerts file."""
        return str(self.settings.alerts_file)

    def manifest(self) -> Manifest:
        """The `manifest` table of `<home>/state.db`."""
        from opx_learning.integrity.manifest import SqliteManifest

        return SqliteManifest(self.settings.state_db)

    def asset_storage(self) -> AssetStorage:
        """Asset files under `<home>/assets`."""
        from opx_learning.resources.io_managers import AssetStorage

        return AssetStorage(base_uri=self.settings.assets_base, home=str(self.settings.home))

    def sweep_audit(self, window: Window, report: Any, counter: Any) -> None:
        """The state database, opened read-only, then its hash chains against `anchor.db`."""
        from opx_learning.integrity.sweep import sweep_sqlite_audit
        from opx_learning.safety.sqlite_backend import verify_chains

        sweep_sqlite_audit(window, self.settings, report, counter)
        path = self.settings.state_db
        if path.exists():
            problems, heads, notes = verify_chains(path)
            _report_chain(report, str(path), problems, heads, notes)


class AwsBackend(Backend):
    """DynamoDB tables, S3 objects, an SNS FIFO topic and CloudWatch, in `settings.region`."""

    name = "aws"
    cloud_monitoring = True

    def outcome_store(self, s3: Any = None) -> OutcomeStore:
        """Parquet under `outcomes_s3_uri` when it is set (read with the S3 client `s3`), else the DynamoDB table."""
        from opx_learning.integrity.manifest import OUTCOMES
        from opx_learning.stores.outcomes import DynamoOutcomeStore, S3OutcomeStore

        if self.settings.outcomes_s3_uri:
            uri = self.settings.outcomes_s3_uri
            return S3OutcomeStore(uri, region=self.settings.region, client=s3, ledger=self.ledger(OUTCOMES, uri))
        return DynamoOutcomeStore(self.settings.outcomes_table, region=self.settings.region)

    def snapshot_store(self, s3: Any = None) -> SnapshotStore:
        """Snapshots under `<assets_s3_uri>/snapshots/` (with the S3 client `s3`); `<home>/snapshots` without a bucket."""
        from opx_learning.integrity.manifest import SNAPSHOTS
        from opx_learning.stores.snapshots import S3SnapshotStore, SnapshotStore

        if self.settings.assets_s3_uri:
            store = S3SnapshotStore(settings=self.settings, client=s3)
            store.ledger = self.ledger(SNAPSHOTS, store.location)
            return store
        return SnapshotStore(settings=self.settings, ledger=self.ledger(SNAPSHOTS, self.settings.home / "snapshots"))

    def safety_stores(self, *, create: bool = False) -> tuple[AuditLog, KillSwitchStore, RateLimiter]:
        """The DynamoDB audit and config tables (`create` has no effect: `aws init` creates them)."""
        from opx_learning.safety.dynamo_backend import open_dynamo
        from opx_learning.safety.rate_limit import parse_limits

        return open_dynamo(self.settings, limits=parse_limits(self.settings.rate_limits))

    def threshold_store(self) -> ThresholdStore:
        """Items of the DynamoDB config table."""
        from opx_learning.safety.dynamo_backend import dynamo_chain, dynamo_client
        from opx_learning.safety.threshold_store import DynamoThresholdStore

        settings = self.settings
        client = dynamo_client(settings.region)
        return DynamoThresholdStore(client, settings.config_table, settings.region,
                                    chain=dynamo_chain(settings, client))

    def alert_publisher(self, **kwargs: Any) -> AlertPublisher:
        """The SNS FIFO alert topic."""
        from opx_learning.alerts.publishers import SnsAlertPublisher

        return SnsAlertPublisher(self.settings, **kwargs)

    def metrics_sink(self) -> MetricsSink:
        """CloudWatch metrics and the operations log."""
        from opx_learning.alerts.metrics import CloudWatchMetrics

        return CloudWatchMetrics(self.settings)

    def completion_hook(self) -> Callable[[AuditRecord], None]:
        """CloudWatch metrics of each completed record."""
        return self.metrics_sink()

    def caller_identity(self) -> str:
        """The STS caller identity's ARN."""
        from opx_learning.safety.principals import caller_identity

        return caller_identity(self.settings)

    @property
    def state_file(self) -> None:
        """No local file: the state is in DynamoDB."""
        return None

    @property
    def alert_target(self) -> str:
        """The SNS topic."""
        return "the SNS alert topic"

    def manifest(self) -> Manifest:
        """Manifest items of the DynamoDB config table."""
        from opx_learning.integrity.manifest import DynamoManifest
        from opx_learning.safety.dynamo_backend import dynamo_client

        return DynamoManifest(dynamo_client(self.settings.region), self.settings.config_table)

    def asset_storage(self) -> AssetStorage:
        """Asset files under `settings.assets_base` (S3 with `assets_s3_uri`)."""
        from opx_learning.resources.io_managers import AwsBackendAssetStorage

        return AwsBackendAssetStorage.from_settings(self.settings, base_uri=self.settings.assets_base)

    def sweep_audit(self, window: Window, report: Any, counter: Any) -> None:
        """The audit table, queried per operation type, then the chains against the S3 anchor."""
        from opx_learning.integrity.sweep import sweep_dynamo_audit
        from opx_learning.safety.dynamo_chain import verify_dynamo_chains

        sweep_dynamo_audit(window, self.settings, report, counter)
        problems, heads, notes = verify_dynamo_chains(self.settings)
        _report_chain(report, f"dynamodb://{self.settings.config_table}", problems, heads, notes)


BACKENDS: dict[str, type[Backend]] = {backend.name: backend for backend in (LocalBackend, AwsBackend)}


def backend_for(settings: Settings) -> Backend:
    """The backend that `settings.backend` names (`Settings` accepts no other name)."""
    return BACKENDS[settings.backend](settings)


def settings_or_environment(settings: Settings | None) -> Settings:
    """`settings`, else the process environment's: only for callers in `opx_learning/app/` that pass none yet.

    Transitional: `app/manual.py` (`begin_manual`) calls `resolve_principal(name)` without settings;
    once it passes them this function goes.
    """
    return settings if settings is not None else Settings.from_env()


def alert_hook_for(settings: Settings) -> Callable[..., Any]:
    """The safety layer's alert hook: publish through the settings' backend's publisher (logged if that fails)."""
    from opx_learning.alerts.publishers import alert_hook

    return alert_hook(settings)


def guard_for(
    settings: Settings,
    *,
    on_alert: Any = None,
    calendar: Any = None,
    on_complete: Any = None,
) -> Any:
    """The safety guard over the settings' backend: SQLite at `settings.state_db`, or the DynamoDB tables.

    Rate limits come from `settings.rate_limits` (the automation's from `settings.automation_rate_limits`) and the calendar, unless given, from
    `settings.maintenance_windows`. Alerts go to the backend's publisher (SNS or
    `alerts.jsonl`, logged if that fails) unless `on_alert` is given; on the aws backend
    completed records also publish CloudWatch metrics unless `on_complete` is given.

    Raises:
        InvalidRequest: malformed `rate_limits` or `maintenance_windows` (naming their variables).
    """
    from opx_learning.safety.guard import Guard
    from opx_learning.safety.maintenance import MaintenanceCalendar
    from opx_learning.safety.models import AUTOMATION
    from opx_learning.safety.rate_limit import AUTOMATION_LIMITS, parse_limits

    backend = backend_for(settings)
    audit, kill_switch, rate_limiter = backend.safety_stores()
    rate_limiter.principal_limits[AUTOMATION.principal] = parse_limits(
        settings.automation_rate_limits, AUTOMATION_LIMITS, "OPX_AUTOMATION_RATE_LIMITS"
    )
    return Guard(
        audit, kill_switch, rate_limiter,
        calendar=calendar if calendar is not None else MaintenanceCalendar.from_settings(settings),
        on_alert=on_alert if on_alert is not None else alert_hook_for(settings),
        on_complete=on_complete if on_complete is not None else backend.completion_hook(),
    )


def threshold_review_for(settings: Settings) -> Any:
    """The threshold change requests over the settings' backend (same audit trail and kill switch as the guard)."""
    from opx_learning.safety.threshold_store import threshold_store
    from opx_learning.safety.thresholds import ThresholdReview

    guard = guard_for(settings)
    return ThresholdReview(threshold_store(settings), guard.audit, guard.kill_switch, guard.on_alert)


CHAIN_HEADS = "chain heads"


def _report_chain(report: Any, where: str, problems: list[Any], heads: dict[str, Any], notes: list[str]) -> None:
    """Add a chain walk's problems (as `AUDIT_TAMPERED` findings), heads and notes to an integrity report."""
    from opx_learning.integrity.findings import Finding, digest
    from opx_learning.safety.chain import AUDIT_TAMPERED

    if heads:
        report.locations[CHAIN_HEADS] = ", ".join(str(head) for head in heads.values())
    report.notes.extend(notes)
    for problem in problems:
        report.findings.append(Finding("audit", f"{where}#{problem.location}", f"{AUDIT_TAMPERED}: {problem.problem}",
                                       problem.evidence or digest(problem.problem), alarm=AUDIT_TAMPERED))
