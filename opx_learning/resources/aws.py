"""The aws backend's resources that reach S3, through dagster-aws's `S3Resource` (`pip install "opx_learning[aws]"`).

Imported only when a code location's backend is aws (`build_resources`), so the local backend
needs no dagster-aws. The S3 resource is configured with the settings' region; boto3 honours
`AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_S3` and the usual credential chain.
"""

from __future__ import annotations

from typing import Any

from dagster_aws.s3 import S3Resource

from opx_learning.backends import AwsBackend
from opx_learning.config import Settings
from opx_learning.resources.base import AwsFields
from opx_learning.resources.io_managers import AwsBackendAssetStorage
from opx_learning.resources.stores import OutcomeStoreResource, SnapshotStoreResource
from opx_learning.stores.outcomes import OutcomeStore
from opx_learning.stores.snapshots import SnapshotStore


def s3_resource(settings: Settings) -> S3Resource:
    """dagster-aws's S3 resource for the settings' region."""
    return S3Resource(region_name=settings.region)


class AwsAssetStorage(AwsBackendAssetStorage):
    """Asset partitions under `assets_s3_uri`, read and written with the S3 resource's client."""

    s3: S3Resource

    def s3_client(self) -> Any:
        """The S3 resource's boto3 client."""
        return self.s3.get_client()


class AwsOutcomeStoreResource(OutcomeStoreResource, AwsFields):
    """The DynamoDB outcomes table (its `TimeIndex`), or Parquet under `outcomes_s3_uri` read with the S3 resource."""

    s3: S3Resource

    def store(self) -> OutcomeStore:
        """The configured outcome store."""
        return AwsBackend(self.settings()).outcome_store(s3=self.s3.get_client())


class AwsSnapshotStoreResource(SnapshotStoreResource, AwsFields):
    """Snapshots under `<assets_s3_uri>/snapshots/`, read and written with the S3 resource."""

    s3: S3Resource

    def store(self) -> SnapshotStore:
        """The configured snapshot store (the one `opx-learning verify` sweeps)."""
        return AwsBackend(self.settings()).snapshot_store(s3=self.s3.get_client())
