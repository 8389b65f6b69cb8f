"""Append-only snapshot store: every version of a window kept side by side (docs/snapshots.md).

Layout: `<root>/<TYPE>/<start>_<end>/v<version>.json`, with `<start>` and `<end>`
the window bounds in ISO-8601 UTC without colons (`2026-01-01T000000.000Z`); a version
file holds the snapshot's canonical JSON (compact, sorted keys; the indented form older
versions wrote is read as well).
`SnapshotStore` keeps it on the local disk (`$OPX_HOME/snapshots`): a version file
is written to a temporary file and then hard-linked to its final name; the link is
atomic and fails if the name exists. `S3SnapshotStore` keeps it under
`OPX_ASSETS_S3_URI/snapshots/` and creates objects with a conditional put
(`If-None-Match: *`). Either way a version is never overwritten, and two processes
appending to one window at once end with distinct versions (the loser of a race
retries with the next number).

Every read is verified: the version file must parse, its `snapshot_id` and
`content_hash` must match its type, window, version and content, it must be the
snapshot its path names, and its bytes must be exactly what the store wrote for that
content (so damage to a field outside the hash, or to the layout, shows too). A
failure raises `IntegrityError` (never the wrong content) and one P0
`DATA_CORRUPTION` alert naming the file; the file is left as it is, as evidence.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from opx_learning.config import Settings
from opx_learning.core.snapshots import (
    SNAPSHOT_TYPES,
    Snapshot,
    build_snapshot,
    check_snapshot_type,
    snapshot_id,
)
from opx_learning.core.windows import Instant, Window
from opx_learning.integrity.findings import (
    Finding,
    IntegrityError,
    digest,
    publish_corruption,
)
from opx_learning.integrity.manifest import SNAPSHOTS, Ledger, sha256_of
from opx_learning.stores.blobs import staged

_VERSION_FILE = re.compile(r"^v(\d+)\.json$")
_DIR_INSTANT = "%Y-%m-%dT%H%M%S.%fZ"
_MAX_ATTEMPTS = 100


class SnapshotStore:
    """Append-only local store of snapshots under `<OPX_HOME>/snapshots`.

    Args:
        root: directory holding the snapshots (default `<settings.home>/snapshots`).
        settings: the settings whose home holds the snapshots (needed when `root` is not given);
            a damaged read raises its P0 alert through their backend's publisher.
        publisher: the `AlertPublisher` of that alert (default: the settings' backend's; with
            neither, the alert is logged).
        ledger: the manifest checks of the versions (default: the settings' backend's manifest;
            without settings, a bare directory, nothing is recorded or checked).

    Raises:
        TypeError: neither `root` nor `settings` given.
    """

    def __init__(
        self,
        root: str | Path | None = None,
        settings: Settings | None = None,
        *,
        publisher: Any = None,
        ledger: Ledger | None = None,
    ) -> None:
        if root is None:
            if settings is None:
                raise TypeError("SnapshotStore: give the root directory or the settings")
            root = settings.home / "snapshots"
        self.root = Path(root)
        self.settings = settings
        self.publisher = publisher
        if ledger is None and settings is not None:
            from opx_learning.backends import backend_for

            ledger = backend_for(settings).ledger(SNAPSHOTS, self.root)
        self.ledger = ledger or Ledger(None, SNAPSHOTS, self.root)

    def append(self, snapshot: Snapshot | Mapping[str, Any]) -> Snapshot:
        """Store a snapshot as the next version of its window, unless its content is unchanged.

        Args:
            snapshot: a built `Snapshot`, or the keyword arguments of `build_snapshot`.

        Returns:
            The latest stored version if it has the same `content_hash` (nothing is
            written), else the snapshot rebuilt as version latest + 1 and stored.
            The store assigns versions; the input's own `version` is ignored.
        """
        if not isinstance(snapshot, Snapshot):
            snapshot = build_snapshot(**dict(snapshot))
        kind, window = snapshot.snapshot_type, snapshot.window
        for _ in range(_MAX_ATTEMPTS):
            latest = self._latest(kind, window)
            if latest is not None and latest.content_hash == snapshot.content_hash:
                return latest
            candidate = snapshot.with_version((latest.version if latest else 0) + 1)
            if self._create(kind, window, candidate.version, candidate.to_json()):
                return candidate
        raise RuntimeError(
            f"snapshot: could not store a new version of {kind} {window.start_iso}..{window.end_iso}"
            f" after {_MAX_ATTEMPTS} attempts"
        )

    def get(self, snapshot_id_: str) -> Snapshot:
        """The stored snapshot with this id.

        Raises:
            KeyError: no stored snapshot has this id.
        """
        for kind, window, version in self._entries():
            if snapshot_id(kind, window, version) == snapshot_id_:
                return self._read(kind, window, version)
        raise KeyError(f"snapshot_id: {snapshot_id_!r} not found in {self.location}")

    def versions(self, snapshot_type: str, start: Instant, end: Instant) -> list[Snapshot]:
        """Every stored version of a window, oldest first."""
        kind, window = check_snapshot_type(snapshot_type), Window.parse(start, end)
        return [self._read(kind, window, version) for version in self._checked_versions(kind, window)]

    def latest(self, snapshot_type: str, start: Instant, end: Instant) -> Snapshot | None:
        """The newest stored version of a window, or None if it was never stored."""
        return self._latest(check_snapshot_type(snapshot_type), Window.parse(start, end))

    def list(self, snapshot_type: str | None = None) -> list[Snapshot]:
        """Every stored snapshot (all versions), ordered by type, window start, window end, version."""
        only = None if snapshot_type is None else check_snapshot_type(snapshot_type)
        return [
            self._read(kind, window, version)
            for kind, window, version in self._entries()
            if only in (None, kind)
        ]

    @property
    def location(self) -> str:
        """Where the snapshots live (a directory or an S3 URI)."""
        return str(self.root)

    def entries(self) -> list[tuple[str, Window, int]]:
        """Every stored `(type, window, version)`, without reading the files (or checking the manifest)."""
        return self._listing()

    def where(self, kind: str, window: Window, version: int) -> str:
        """The path (or S3 URI) of one stored version."""
        return str(self._folder(kind, window) / f"v{version}.json")

    def check(self, kind: str, window: Window, version: int) -> Finding | None:
        """Re-read one stored version and verify it; the finding if it fails (no alert is raised).

        Raises:
            OSError, botocore errors: the store could not be read at all (not a verdict on the data).
        """
        try:
            data = self._read_bytes(kind, window, version)
        except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
            return Finding("snapshots", self.where(kind, window, version), f"unreadable: {exc}")
        where = self.where(kind, window, version)
        if self.ledger.active:
            key = self.ledger.key(where)
            problem = self.ledger.problem(key, data, self.ledger.expected(key).get(key))
            if problem is not None:
                return Finding("snapshots", where, problem, digest(data))
        result = self._verify(kind, window, version, data)
        return result if isinstance(result, Finding) else None

    def _latest(self, kind: str, window: Window) -> Snapshot | None:
        versions = self._checked_versions(kind, window)
        return self._read(kind, window, versions[-1]) if versions else None

    def _checked_versions(self, kind: str, window: Window) -> list[int]:
        """The stored versions of a window; a version the manifest lists but the store lacks fails the read."""
        versions = self._versions(kind, window)
        if self.ledger.active:
            folder = self.ledger.key(self.where(kind, window, 1)).rsplit("/", 1)[0] + "/"
            present = {self.ledger.key(self.where(kind, window, version)) for version in versions}
            self.ledger.missing(present, folder)
        return versions

    def _entries(self) -> list[tuple[str, Window, int]]:
        entries = self._listing()
        if self.ledger.active:
            self.ledger.missing({self.ledger.key(self.where(*entry)) for entry in entries})
        return entries

    def _listing(self) -> list[tuple[str, Window, int]]:
        entries = [
            (kind, window, version)
            for kind, window in self._windows()
            for version in self._versions(kind, window)
        ]
        entries.sort(key=lambda entry: (SNAPSHOT_TYPES.index(entry[0]), entry[1].start, entry[1].end, entry[2]))
        return entries

    def _read(self, kind: str, window: Window, version: int) -> Snapshot:
        data = self._read_bytes(kind, window, version)
        self.ledger.check(self.where(kind, window, version), data)
        result = self._verify(kind, window, version, data)
        if isinstance(result, Finding):
            publish_corruption([result], source="read", settings=self.settings, publisher=self.publisher)
            raise IntegrityError(result)
        return result

    def _verify(self, kind: str, window: Window, version: int, data: bytes) -> Snapshot | Finding:
        """The snapshot in `data` if it passes every check, else the finding."""
        problem = None
        try:
            snapshot = Snapshot.from_json(data)
        except (ValueError, TypeError, AttributeError) as exc:
            # Unicode and JSON decode errors are ValueErrors; so are id and content-hash mismatches.
            snapshot, problem = None, f"unparsable or inconsistent snapshot: {exc}"
        if snapshot is not None:
            named = (kind, window, version)
            held = (snapshot.snapshot_type, snapshot.window, snapshot.version)
            if held != named:
                problem = (
                    f"holds {held[0]} {held[1].start_iso}..{held[1].end_iso} v{held[2]} but is stored as "
                    f"{kind} {window.start_iso}..{window.end_iso} v{version}"
                )
            elif data != snapshot.to_json().encode() and data != snapshot.to_json(indent=1).encode():
                problem = "bytes differ from the stored form of their content (a field outside the content hash changed)"
        if snapshot is not None and problem is None:
            return snapshot
        return Finding("snapshots", self.where(kind, window, version), str(problem), digest(data))

    # Storage primitives: the only methods a backend overrides.

    def _folder(self, kind: str, window: Window) -> Path:
        return self.root / _relative_folder(kind, window)

    def _versions(self, kind: str, window: Window) -> list[int]:
        folder = self._folder(kind, window)
        if not folder.is_dir():
            return []
        return sorted(version for path in folder.iterdir() if (version := _version_of(path.name)) is not None)

    def _windows(self) -> list[tuple[str, Window]]:
        found = []
        for kind in SNAPSHOT_TYPES:
            type_dir = self.root / kind
            if type_dir.is_dir():
                found.extend((kind, window) for d in type_dir.iterdir() if (window := _parse_folder(d.name)))
        return found

    def _read_bytes(self, kind: str, window: Window, version: int) -> bytes:
        return (self._folder(kind, window) / f"v{version}.json").read_bytes()

    def _create(self, kind: str, window: Window, version: int, text: str) -> bool:
        folder = self._folder(kind, window)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"v{version}.json"
        if not self.ledger.active:
            return _create_exclusive(path, text)
        data = text.encode()
        with staged(path, data) as temporary:
            try:
                # link() never replaces an existing name; the manifest row is inserted only if it succeeds.
                self.ledger.manifest.record(  # type: ignore[union-attr]
                    SNAPSHOTS, self.ledger.key(path), sha256_of(data), len(data), publish=lambda: os.link(temporary, path)
                )
            except FileExistsError:
                return False
        return True


class S3SnapshotStore(SnapshotStore):
    """The same append-only store on S3, under `<uri>/snapshots/`.

    Args:
        uri: `s3://bucket/prefix` (default `settings.assets_s3_uri`, `OPX_ASSETS_S3_URI`); the bucket must exist.
        settings: settings for the default URI, the region and the alert of a damaged read.
        client: a boto3 S3 client (default: a new one for the settings' region; boto3 honours `AWS_ENDPOINT_URL`).
        publisher: the `AlertPublisher` of a damaged read's alert (default: the settings' backend's).

    Raises:
        ValueError: no URI given and `OPX_ASSETS_S3_URI` unset, or not an `s3://` URI.
    """

    def __init__(
        self, uri: str | None = None, settings: Settings | None = None, client: Any = None, *, publisher: Any = None
    ) -> None:
        self.settings = settings
        self.publisher = publisher
        uri = uri or (settings.assets_s3_uri if settings is not None else None)
        parsed = urlparse(uri or "")
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ValueError(f"OPX_ASSETS_S3_URI: {uri!r} is not an s3://bucket/prefix URI")
        self.bucket = parsed.netloc
        self.prefix = "/".join(part for part in (parsed.path.strip("/"), "snapshots") if part) + "/"
        if client is None:
            from opx_learning.stores.blobs import s3_client

            client = s3_client(settings.region if settings is not None else None)
        self.client = client
        self.ledger = Ledger(None, SNAPSHOTS, self.location)

    @property
    def location(self) -> str:
        """The S3 URI of the snapshots."""
        return f"s3://{self.bucket}/{self.prefix}"

    def _key(self, kind: str, window: Window, version: int) -> str:
        return f"{self.prefix}{_relative_folder(kind, window)}/v{version}.json"

    def _keys(self, prefix: str) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]

    def _versions(self, kind: str, window: Window) -> list[int]:
        folder = f"{self.prefix}{_relative_folder(kind, window)}/"
        names = (key[len(folder) :] for key in self._keys(folder))
        return sorted(version for name in names if (version := _version_of(name)) is not None)

    def _windows(self) -> list[tuple[str, Window]]:
        found = set()
        for key in self._keys(self.prefix):
            parts = key[len(self.prefix) :].split("/")
            if len(parts) == 3 and parts[0] in SNAPSHOT_TYPES and (window := _parse_folder(parts[1])):
                found.add((parts[0], window))
        return list(found)

    def where(self, kind: str, window: Window, version: int) -> str:
        """The S3 URI of one stored version."""
        return f"s3://{self.bucket}/{self._key(kind, window, version)}"

    def _read_bytes(self, kind: str, window: Window, version: int) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=self._key(kind, window, version))["Body"].read()

    def _create(self, kind: str, window: Window, version: int, text: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=self._key(kind, window, version),
                Body=text.encode(),
                ContentType="application/json",
                IfNoneMatch="*",
            )
        except ClientError as error:
            # 412: the version exists; 409: a concurrent conditional write won the race.
            if error.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
                return False
            raise
        if self.ledger.active:
            data = text.encode()
            key = self.ledger.key(self.where(kind, window, version))
            self.ledger.manifest.record(SNAPSHOTS, key, sha256_of(data), len(data))  # type: ignore[union-attr]
        return True


def snapshot_store(settings: Settings) -> SnapshotStore:
    """The snapshot store of the settings' backend: S3 on the aws backend with `OPX_ASSETS_S3_URI`, else local."""
    from opx_learning.backends import backend_for

    return backend_for(settings).snapshot_store()


def _relative_folder(kind: str, window: Window) -> str:
    return f"{kind}/{_dir_instant(window.start)}_{_dir_instant(window.end)}"


def _version_of(name: str) -> int | None:
    match = _VERSION_FILE.match(name)
    return int(match.group(1)) if match else None


def _dir_instant(instant: datetime) -> str:
    return instant.strftime("%Y-%m-%dT%H%M%S.") + f"{instant.microsecond // 1000:03d}Z"


def _parse_folder(name: str) -> Window | None:
    start, _, end = name.partition("_")
    try:
        return Window(
            datetime.strptime(start, _DIR_INSTANT).replace(tzinfo=UTC),
            datetime.strptime(end, _DIR_INSTANT).replace(tzinfo=UTC),
        )
    except ValueError:
        return None


def _create_exclusive(path: Path, text: str) -> bool:
    """Write `text` to `path` atomically; False (and nothing written) if `path` already exists."""
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            # link() never replaces an existing name, unlike rename()/os.replace().
            os.link(temp, path)
        except FileExistsError:
            return False
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
