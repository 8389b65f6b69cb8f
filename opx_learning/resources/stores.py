"""Dagster resources over the project's stores (outcomes, snapshots), chosen by backend."""

from __future__ import annotations

import dagster as dg

from opx_learning.config import get_settings
from opx_learning.stores.outcomes import OutcomeStore, outcome_store
from opx_learning.stores.snapshots import SnapshotStore, snapshot_store


class OutcomeStoreResource(dg.ConfigurableResource):
    """The active backend's outcome store (local Parquet, DynamoDB or S3 Parquet)."""

    def store(self) -> OutcomeStore:
        """The outcome store selected by `OPX_BACKEND` (resolved at call time)."""
        return outcome_store(get_settings())


class SnapshotStoreResource(dg.ConfigurableResource):
    """The append-only snapshot store: `$OPX_HOME/snapshots`, or `OPX_ASSETS_S3_URI/snapshots/` on aws."""

    def store(self) -> SnapshotStore:
        """The snapshot store of the current settings (the one `opx-learning verify` sweeps)."""
        return snapshot_store(get_settings())
