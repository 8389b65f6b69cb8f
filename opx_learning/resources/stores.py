"""Dagster resources over the project's stores (outcomes, snapshots); the aws classes are in `resources/aws.py`."""

from __future__ import annotations

from opx_learning.resources.base import OpxResource
from opx_learning.stores.outcomes import OutcomeStore, outcome_store
from opx_learning.stores.snapshots import SnapshotStore, snapshot_store


class OutcomeStoreResource(OpxResource):
    """The outcome store this code location reads (local Parquet, DynamoDB or S3 Parquet)."""

    def store(self) -> OutcomeStore:
        """The configured outcome store."""
        return outcome_store(self.settings())


class LocalOutcomeStoreResource(OutcomeStoreResource):
    """Day-partitioned Parquet under `<home>/outcomes`."""


class SnapshotStoreResource(OpxResource):
    """The append-only snapshot store: `<home>/snapshots`, or `<assets_s3_uri>/snapshots/` on aws."""

    def store(self) -> SnapshotStore:
        """The configured snapshot store (the one `opx-learning verify` sweeps)."""
        return snapshot_store(self.settings())


class LocalSnapshotStoreResource(SnapshotStoreResource):
    """Snapshots under `<home>/snapshots`."""
