"""The manifest of stored objects: the SHA-256 and size of every write, append-only (docs/integrity.md).

Every object the project stores (asset partitions, outcome partitions, snapshot versions,
calibrations) is written through a `Ledger`, which records its digest in the manifest in
the same step that reports it stored, and every read is checked against the manifest before
a single byte is decoded. A mismatch, an object the manifest lists but the store lacks, and
an object the manifest does not know are each an `IntegrityError` plus one P0
`DATA_CORRUPTION` alert naming the object; nothing is computed from it.

Where the manifest lives:

- local backend: the `manifest` table of the state database (`<home>/state.db`), one row per
  write (`seq`, `store`, `key`, `sha256`, `size`, `written_at`); triggers refuse UPDATE and
  DELETE. A local write renames its temporary file over the target and inserts the row in one
  `BEGIN IMMEDIATE` transaction, so two writers of one object leave the manifest naming the
  bytes that won;
- aws backend: items of the config table, `PK = "MANIFEST#<store>"`,
  `SK = "<key>#<written_at>#<nonce>"`, created with a condition that the item does not exist.

The latest row of a key is its expected content. Keys are relative to the store's base
(`<home>/assets`, `<home>/outcomes`, `<home>/snapshots`, or their S3 prefixes), so a moved
home keeps its manifest.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import urllib.parse
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from opx_learning.integrity.findings import Finding, IntegrityError, publish_corruption
from opx_learning.safety.models import BackendUnavailable
from opx_learning.stores.blobs import get_bytes, put_bytes, staged

ASSETS, OUTCOMES, SNAPSHOTS = "assets", "outcomes", "snapshots"
# Under the aws assets prefix but not asset files: the snapshot store and the audit chain's anchor object.
_NOT_ASSETS = ("snapshots/", "integrity/")
# The size of a row that records an object's accepted absence (`init --adopt` after a deletion).
REMOVED = -1
_CHUNK = 1 << 20
MANIFEST_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS manifest (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    store TEXT NOT NULL,
    key TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    written_at TEXT NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS manifest_by_key ON manifest (store, key, seq)",
    """CREATE TRIGGER IF NOT EXISTS manifest_no_update BEFORE UPDATE ON manifest
BEGIN
    SELECT RAISE(ABORT, 'the manifest is append-only: rows cannot change');
END""",
    """CREATE TRIGGER IF NOT EXISTS manifest_no_delete BEFORE DELETE ON manifest
BEGIN
    SELECT RAISE(ABORT, 'the manifest is append-only: rows cannot be deleted');
END""",
)


def has_manifest_table(conn: sqlite3.Connection) -> bool:
    """Whether the state database holds the manifest table (it is created on the first write)."""
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'manifest'").fetchone() is not None


class ManifestUnavailable(BackendUnavailable):
    """The manifest cannot be read or written (state database missing, locked or unreadable): fail closed."""


@dataclass(frozen=True)
class Entry:
    """The expected content of one stored object: its latest manifest row."""

    store: str
    key: str
    sha256: str
    size: int
    written_at: str

    def describe(self) -> str:
        """`sha256 <12 hex>…, <size> bytes, written <when>`."""
        return f"sha256 {self.sha256[:12]}…, {self.size} bytes, written {self.written_at}"


def sha256_of(data: bytes) -> str:
    """SHA-256 hex of `data`."""
    return hashlib.sha256(data).hexdigest()


def file_digest(path: str | Path) -> tuple[str, int]:
    """SHA-256 hex and size of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Manifest(ABC):
    """Append-only record of what was stored: the latest row of a key is its expected content."""

    @property
    @abstractmethod
    def location(self) -> str:
        """Where the manifest lives (for messages)."""

    @abstractmethod
    def record(self, store: str, key: str, sha256: str, size: int, *, publish: Any = None) -> None:
        """Append a row; `publish()` (the local rename) runs inside the same transaction, before the insert."""

    @abstractmethod
    def entries(self, store: str, prefix: str = "") -> dict[str, Entry]:
        """The latest row of every key of `store` that starts with `prefix`."""

    def entry(self, store: str, key: str) -> Entry | None:
        """The latest row of one key, or None."""
        return self.entries(store, key).get(key)


class SqliteManifest(Manifest):
    """The `manifest` table of the local state database.

    Args:
        path: the state database (`<home>/state.db`); it must exist (only `init` creates it).
        timeout: seconds a writer waits for the database lock.
    """

    def __init__(self, path: str | Path, timeout: float = 10.0) -> None:
        self.path = Path(path)
        self.timeout = timeout

    @property
    def location(self) -> str:
        """`<state.db>#manifest`."""
        return f"{self.path}#manifest"

    def _connect(self, *, write: bool) -> sqlite3.Connection:
        if not self.path.exists():
            raise ManifestUnavailable(
                f"manifest of stored objects unavailable: state database {self.path} does not exist; nothing is "
                "read or written without it (run `opx-learning init` for a new home)"
            )
        mode = "rw" if write else "ro"
        uri = f"file:{urllib.parse.quote(str(self.path.absolute()))}?mode={mode}"
        try:
            conn = sqlite3.connect(uri, timeout=self.timeout, isolation_level=None, uri=True)
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
        except (sqlite3.Error, OSError) as exc:
            raise ManifestUnavailable(f"manifest: state database {self.path}: {exc}") from exc
        return conn


    def record(self, store: str, key: str, sha256: str, size: int, *, publish: Any = None) -> None:
        """Rename (via `publish`) and insert in one `BEGIN IMMEDIATE` transaction."""
        conn = self._connect(write=True)
        try:
            # The state database runs in WAL mode: NORMAL syncs at checkpoints, as its other writers do.
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                if not has_manifest_table(conn):
                    for statement in MANIFEST_SCHEMA:
                        conn.execute(statement)
                if publish is not None:
                    publish()
                conn.execute(
                    "INSERT INTO manifest (store, key, sha256, size, written_at) VALUES (?, ?, ?, ?, ?)",
                    (store, key, sha256, size, _now()),
                )
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise ManifestUnavailable(f"manifest: cannot record {store}/{key} in {self.path}: {exc}") from exc
        finally:
            conn.close()

    def entries(self, store: str, prefix: str = "") -> dict[str, Entry]:
        """Latest rows by key (one indexed query)."""
        conn = self._connect(write=False)
        try:
            if not has_manifest_table(conn):
                return {}
            rows = conn.execute(
                "SELECT key, sha256, size, written_at FROM manifest WHERE seq IN ("
                " SELECT MAX(seq) FROM manifest WHERE store = ? AND key >= ? AND key < ? GROUP BY key)",
                (store, prefix, prefix + "\uffff"),
            ).fetchall()
        except sqlite3.Error as exc:
            raise ManifestUnavailable(f"manifest: cannot read {self.path}: {exc}") from exc
        finally:
            conn.close()
        return {key: Entry(store, key, sha, size, at) for key, sha, size, at in rows if size != REMOVED}


class DynamoManifest(Manifest):
    """Manifest items of the config table (`PK = "MANIFEST#<store>"`).

    Args:
        client: a boto3 DynamoDB client.
        table: the config table (`settings.config_table`).
    """

    def __init__(self, client: Any, table: str) -> None:
        self.client = client
        self.table = table

    @property
    def location(self) -> str:
        """`dynamodb://<table>#MANIFEST`."""
        return f"dynamodb://{self.table}#MANIFEST"

    def record(self, store: str, key: str, sha256: str, size: int, *, publish: Any = None) -> None:
        """A conditional put of a new item (never overwrites one)."""
        if publish is not None:
            publish()
        at = _now()
        try:
            self.client.put_item(
                TableName=self.table,
                Item={
                    "PK": {"S": f"MANIFEST#{store}"},
                    "SK": {"S": f"{key}#{at}#{uuid.uuid4().hex[:8]}"},
                    "objectKey": {"S": key},
                    "sha256": {"S": sha256},
                    "size": {"N": str(size)},
                    "writtenAt": {"S": at},
                },
                ConditionExpression="attribute_not_exists(PK)",
            )
        except Exception as exc:  # botocore errors: the write is not recorded, so it is not stored
            raise ManifestUnavailable(f"manifest: cannot record {store}/{key} in {self.table}: {exc}") from exc

    def entries(self, store: str, prefix: str = "") -> dict[str, Entry]:
        """Latest item by key (one paginated Query of the store's partition)."""
        request: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "PK = :pk" + (" AND begins_with(SK, :prefix)" if prefix else ""),
            "ExpressionAttributeValues": {":pk": {"S": f"MANIFEST#{store}"}},
            "ConsistentRead": True,
        }
        if prefix:
            request["ExpressionAttributeValues"][":prefix"] = {"S": prefix}
        found: dict[str, Entry] = {}
        try:
            for page in self.client.get_paginator("query").paginate(**request):
                for item in page.get("Items", []):
                    key = item["objectKey"]["S"]
                    if not key.startswith(prefix):
                        continue
                    # Items of a key sort by write time, so the last one seen is the latest.
                    found[key] = Entry(store, key, item["sha256"]["S"], int(item["size"]["N"]), item["writtenAt"]["S"])
        except Exception as exc:  # botocore errors
            raise ManifestUnavailable(f"manifest: cannot read {self.table}: {exc}") from exc
        return {key: entry for key, entry in found.items() if entry.size != REMOVED}


def _mismatch(digest: str, size: int, entry: Entry) -> str | None:
    """The finding's text when bytes of this digest and size are not what `entry` lists, else None."""
    if (digest, size) == (entry.sha256, entry.size):
        return None
    return f"content does not match the manifest: read sha256 {digest[:12]}…, {size} bytes; expected {entry.describe()}; not read"


class Ledger:
    """One store's writes and checked reads against the manifest.

    Args:
        manifest: the manifest (None: nothing is recorded or checked, as for a bare directory).
        store: `assets`, `outcomes` or `snapshots`.
        base: the store's base directory or `s3://bucket/prefix`; keys are relative to it.
        settings: the settings whose backend publishes the P0 alert of a failed check.
        publisher: the alert publisher (default: the settings' backend's).
    """

    def __init__(
        self, manifest: Manifest | None, store: str, base: str | Path, *, settings: Any = None, publisher: Any = None
    ) -> None:
        self.manifest = manifest
        self.store = store
        self.base = str(base).rstrip("/")
        self.settings = settings
        self.publisher = publisher

    @property
    def active(self) -> bool:
        """Whether writes are recorded and reads checked."""
        return self.manifest is not None

    def key(self, uri: str | Path) -> str:
        """The manifest key of an object: its path relative to the base."""
        text = str(uri)
        if not text.startswith(self.base + "/"):
            raise ValueError(f"{text} is not under the {self.store} store {self.base}")
        return text[len(self.base) + 1 :]

    def uri(self, key: str) -> str:
        """The object of a manifest key."""
        return f"{self.base}/{key}"

    def write(self, uri: str | Path, data: bytes, *, client: Any = None) -> None:
        """Store `data` at `uri` and record its digest (locally: rename and record in one transaction)."""
        text = str(uri)
        if self.manifest is None:
            put_bytes(text, data, client=client)
            return
        key, digest, size = self.key(text), sha256_of(data), len(data)
        if text.startswith("s3://"):
            put_bytes(text, data, client=client)
            self.manifest.record(self.store, key, digest, size)
            return
        path = Path(text)
        path.parent.mkdir(parents=True, exist_ok=True)
        with staged(path, data) as temporary:
            self.manifest.record(self.store, key, digest, size, publish=lambda: os.replace(temporary, path))

    def record_existing(self, path: str | Path) -> None:
        """Record an object another writer just renamed into place (the caller holds its own lock)."""
        if self.manifest is not None:
            digest, size = file_digest(path)
            self.manifest.record(self.store, self.key(path), digest, size)

    def expected(self, prefix: str = "") -> dict[str, Entry]:
        """The manifest's latest rows under a key prefix (empty when inactive).

        Raises:
            ManifestUnavailable: the manifest cannot be read (nothing may be read or written then).
        """
        if self.manifest is None:
            return {}
        return self.manifest.entries(self.store, prefix)

    def problem(self, key: str, data: bytes | None, entry: Entry | None) -> str | None:
        """What is wrong with an object's bytes (None: absent) against its manifest row, or None."""
        if data is None:
            return None if entry is None else f"listed in the manifest ({entry.describe()}) but missing: deleted or rolled back"
        if entry is None:
            return ("not in the manifest of stored objects: written outside opx_learning or copied in; not read "
                    "(`opx-learning init --adopt` accepts the stored objects as they are)")
        return _mismatch(sha256_of(data), len(data), entry)

    def check(self, uri: str | Path, data: bytes | None, entry: Entry | None | object = ...) -> None:
        """Raise (and alert) unless `data` is what the manifest lists for `uri` (no-op when inactive)."""
        if self.manifest is None:
            return
        key = self.key(uri)
        if entry is ...:
            entry = self.expected(key).get(key)
        problem = self.problem(key, data, entry)  # type: ignore[arg-type]
        if problem is not None:
            evidence = sha256_of(data) if data is not None else ""
            self.fail(Finding(self.store, str(uri), problem, evidence))

    def check_file(self, path: str | Path, entry: Entry | None | object = ...) -> None:
        """`check` for a local file, hashed in chunks without holding it in memory."""
        if self.manifest is None:
            return
        key = self.key(path)
        if entry is ...:
            entry = self.expected(key).get(key)
        try:
            digest, size = file_digest(path)
        except FileNotFoundError:
            self.check(path, None, entry)
            return
        if entry is None:
            self.fail(Finding(self.store, str(path), self.problem(key, b"", None) or "", digest))
        problem = _mismatch(digest, size, entry)  # type: ignore[arg-type]
        if problem is not None:
            self.fail(Finding(self.store, str(path), problem, digest))

    def read(self, uri: str, *, client: Any = None) -> bytes | None:
        """An object's bytes once they match the manifest (None when neither the store nor the manifest has it)."""
        data = get_bytes(uri, client=client)
        self.check(uri, data)
        return data

    def missing(self, present: Iterable[str], prefix: str = "", entries: Mapping[str, Entry] | None = None) -> None:
        """Raise for the first key the manifest lists under `prefix` that is not among the `present` keys."""
        if self.manifest is None:
            return
        listed = self.expected(prefix) if entries is None else entries
        gone = sorted(set(listed) - set(present))
        if gone:
            self.check(self.uri(gone[0]), None, listed[gone[0]])

    def fail(self, finding: Finding) -> NoReturn:
        """Raise the P0 alert of `finding` and an `IntegrityError`."""
        publish_corruption([finding], source="read", settings=self.settings, publisher=self.publisher)
        raise IntegrityError(finding)


def stored_keys(ledger: Ledger, client: Any = None) -> list[str]:
    """The keys of every object under a ledger's base (hidden and temporary files aside; on S3 the assets skip `snapshots/`)."""
    from opx_learning.stores.blobs import list_keys

    base = ledger.base
    if base.startswith("s3://"):
        bucket = base[len("s3://"):].split("/", 1)[0]
        keys = (ledger.key(f"s3://{bucket}/{key}") for key in list_keys(base + "/", client=client))
        return sorted(
            key for key in keys
            if not key.rsplit("/", 1)[-1].startswith(".") and not (ledger.store == ASSETS and key.startswith(_NOT_ASSETS))
        )
    root = Path(base)
    if not root.is_dir():
        return []
    return sorted(
        ledger.key(path) for path in root.rglob("*")
        if not path.name.startswith(".") and not path.name.endswith(".partial") and path.is_file()
    )


def adopt_objects(ledgers: Iterable[Ledger], client: Any = None) -> dict[str, dict[str, int]]:
    """Make the stores' current content what reads expect; per store, how many objects were adopted, changed, removed.

    For `opx-learning init --adopt` (audited, EMERGENCY_OVERRIDE): objects the manifest does not
    list are recorded with their current digest (a home written before the manifest existed, a
    restored backup), objects whose bytes differ get a new row with their current digest, and
    objects the manifest lists but the store lacks get a row recording their removal. Rows are
    only appended: the history of what was expected stays in the manifest.
    """
    counts: dict[str, dict[str, int]] = {}
    for ledger in ledgers:
        if ledger.manifest is None:
            continue
        listed = ledger.expected()
        present = stored_keys(ledger, client)
        count = {"adopted": 0, "changed": 0, "removed": 0}
        for key in present:
            data = get_bytes(ledger.uri(key), client=client)
            if data is None:
                continue
            digest = sha256_of(data)
            entry = listed.get(key)
            if entry is not None and (entry.sha256, entry.size) == (digest, len(data)):
                continue
            ledger.manifest.record(ledger.store, key, digest, len(data))
            count["adopted" if entry is None else "changed"] += 1
        for key in sorted(set(listed) - set(present)):
            ledger.manifest.record(ledger.store, key, "", REMOVED)
            count["removed"] += 1
        counts[ledger.store] = count
    return counts
