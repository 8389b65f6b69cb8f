"""Asset storage: polars-native Parquet (and JSON documents) on the local disk or S3.

Layout: `<base>/<asset key path>/<partition key>.parquet` (`.json` for documents such
as calibrations and snapshots), `<base>/<asset key path>/latest.parquet` for
unpartitioned assets. `<base>` is `$OPX_HOME/assets` on the local backend and
`OPX_ASSETS_S3_URI` on the aws backend (boto3 honours `AWS_ENDPOINT_URL`).

The project's assets write through `AssetStorage` themselves, inside the guarded
block, and return `MaterializeResult` (see `defs/operations.py`: the audit record is
SUCCESS only once everything is stored), so the IO manager stores nothing for them.
It remains the code location's IO manager for other assets: one file per partition
(a range output is `{partition_key: value}`), partitioned inputs loaded as
`{partition_key: value}`.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from opx_learning.config import Settings
from opx_learning.integrity.manifest import ASSETS, Ledger
from opx_learning.resources.base import AwsFields
from opx_learning.stores.blobs import get_bytes, local_exists

Stored = pl.DataFrame | dict[str, Any]
UNPARTITIONED = "latest"


class AssetStorage(dg.ConfigurableResource):
    """Reads and writes asset values by asset key and partition key.

    Files are named by the asset's own name (the last part of its key), so a key prefix given to
    `build_defs` does not move a home's files. With `home`, every write is recorded in the
    manifest of `<home>/state.db` and every read is checked against it first (docs/integrity.md).

    Args:
        base_uri: a directory or `s3://bucket/prefix` (`<home>/assets` locally, `assets_s3_uri` on aws).
        home: the home whose manifest records and checks the files (None: nothing recorded or checked).
    """

    base_uri: str
    home: str | None = None

    def s3_client(self) -> Any:
        """The S3 client for an `s3://` base (None here: boto3's own; the aws class uses dagster-aws's S3 resource)."""
        return None

    def resolved_base(self) -> str:
        """The base directory or S3 URI in use."""
        return self.base_uri.rstrip("/")

    def manifest_settings(self) -> Settings | None:
        """The settings whose manifest and alerts this storage uses (None: unchecked)."""
        return Settings(home=Path(self.home)) if self.home else None

    def ledger(self) -> Ledger:
        """The manifest checks of this storage's files."""
        from opx_learning.backends import backend_for

        settings = self.manifest_settings()
        manifest = backend_for(settings).manifest() if settings is not None else None
        return Ledger(manifest, ASSETS, self.resolved_base(), settings=settings)

    def uri(
        self, asset_key: dg.AssetKey | Sequence[str] | str, partition: str | None, suffix: str, base: str | None = None
    ) -> str:
        """Where one partition of an asset is stored (under `base`, default `resolved_base()`)."""
        path = "/".join(_key_path(asset_key))
        return f"{base or self.resolved_base()}/{path}/{partition or UNPARTITIONED}.{suffix}"

    def write(self, asset_key: dg.AssetKey | Sequence[str] | str, partition: str | None, value: Stored) -> str:
        """Store a frame as Parquet or a dict as JSON and record its digest; returns the URI written."""
        buffer = io.BytesIO()
        if isinstance(value, pl.DataFrame):
            value.write_parquet(buffer)
            suffix = "parquet"
        elif isinstance(value, Mapping):
            buffer.write(json.dumps(value, sort_keys=True, default=str).encode())
            suffix = "json"
        else:
            raise TypeError(f"asset value: {type(value).__name__} is neither a polars DataFrame nor a dict")
        uri = self.uri(asset_key, partition, suffix)
        self.ledger().write(uri, buffer.getvalue(), client=self.s3_client())
        return uri

    def parquet_sources(
        self, asset_key: dg.AssetKey | Sequence[str] | str, partitions: Sequence[str]
    ) -> dict[str, str | bytes]:
        """The stored Parquet of each partition that has one: a local path (checked, not decoded) or an S3 object's bytes.

        `pl.scan_parquet` takes a list of either, so a range of partitions is read lazily, only
        the columns a query uses; on S3 each object is fetched once (compressed) and decoded lazily.
        Every file is checked against the manifest first; a partition the manifest lists but the
        store lacks fails the read.
        """
        found: dict[str, str | bytes] = {}
        base = self.resolved_base()
        ledger = self.ledger()
        listed = ledger.expected(_key_path(asset_key)[0] + "/")
        for partition in partitions:
            uri = self.uri(asset_key, partition, "parquet", base)
            entry = listed.get(ledger.key(uri)) if ledger.active else None
            if uri.startswith("s3://"):
                data = get_bytes(uri, client=self.s3_client())
                if data is not None or entry is not None:
                    ledger.check(uri, data, entry)
                if data is not None:
                    found[partition] = data
            elif local_exists(uri):
                ledger.check_file(uri, entry)
                found[partition] = uri
            elif entry is not None:
                ledger.check(uri, None, entry)
        return found

    def read(self, asset_key: dg.AssetKey | Sequence[str] | str, partition: str | None) -> Stored | None:
        """The stored value of one partition once it matches the manifest, or None when nothing is stored."""
        ledger = self.ledger()
        listed = ledger.expected(f"{_key_path(asset_key)[0]}/{partition or UNPARTITIONED}.")
        for suffix in ("parquet", "json"):
            uri = self.uri(asset_key, partition, suffix)
            data = get_bytes(uri, client=self.s3_client())
            entry = listed.get(ledger.key(uri)) if ledger.active else None
            if data is not None or entry is not None:
                ledger.check(uri, data, entry)
            if data is not None:
                if suffix == "parquet":
                    return pl.read_parquet(io.BytesIO(data))
                return json.loads(data)
        return None


class AwsBackendAssetStorage(AwsFields, AssetStorage):
    """Asset files of the aws backend: the manifest in the config table, alerts to the SNS topic."""

    def manifest_settings(self) -> Settings:
        """The aws settings these fields stand for."""
        return self.settings()

    def s3_client(self) -> Any:
        """A boto3 S3 client for the region."""
        from opx_learning.backends import backend_for

        return backend_for(self.settings()).blob_client()


class PolarsParquetIOManager(dg.ConfigurableIOManager):
    """Stores each partition of an asset as its own Parquet (frame) or JSON (dict) file.

    Args:
        storage: where the files live (local directory or S3).
    """

    storage: AssetStorage

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        """Write one file per partition key (a range output is `{partition_key: value}`)."""
        if obj is None:
            return
        if not context.has_asset_partitions:
            uri = self.storage.write(context.asset_key, None, obj)
            context.add_output_metadata({"uri": dg.MetadataValue.path(uri)})
            return
        keys = list(context.asset_partition_keys)
        if isinstance(obj, Mapping) and obj and set(obj) <= set(keys):
            values = dict(obj)
        elif len(keys) == 1:
            values = {keys[0]: obj}
        else:
            raise dg.Failure(
                f"{context.asset_key.to_user_string()}: an output covering {len(keys)} partitions "
                "must be a dict keyed by partition key"
            )
        uris = [self.storage.write(context.asset_key, key, value) for key, value in values.items()]
        context.add_output_metadata(
            {"files": len(uris), "uri": dg.MetadataValue.path(uris[-1] if len(uris) == 1 else _parent(uris[-1]))}
        )

    def load_input(self, context: dg.InputContext) -> Any:
        """Load an unpartitioned value, or `{partition_key: value}` for partitioned upstreams."""
        asset_key = context.asset_key
        if not context.has_asset_partitions:
            return self._read_required(asset_key, None)
        return {key: self._read_required(asset_key, key) for key in context.asset_partition_keys}

    def _read_required(self, asset_key: dg.AssetKey, partition: str | None) -> Stored:
        value = self.storage.read(asset_key, partition)
        if value is None:
            where = f"partition {partition}" if partition else "its value"
            raise dg.Failure(
                f"{asset_key.to_user_string()}: {where} is not materialized; materialize it first "
                f"(looked under {self.storage.resolved_base()})"
            )
        return value


def _key_path(asset_key: dg.AssetKey | Sequence[str] | str) -> list[str]:
    if isinstance(asset_key, dg.AssetKey):
        return [asset_key.path[-1]]
    if isinstance(asset_key, str):
        return [asset_key]
    return [list(asset_key)[-1]]


def _parent(uri: str) -> str:
    return uri.rsplit("/", 1)[0]


