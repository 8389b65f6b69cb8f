"""Finding stored snapshots by reference: id (or id prefix), window, version; the previous one of a cadence.

A reference is either a snapshot id (the 64 hex digits, or a unique prefix of at least
8) or a window `TYPE:START..END` (e.g. `DAILY:2026-01-05..2026-01-06`), optionally
followed by `@vN` (or `@N`) for another stored version of the same window. A window
without a version means its latest stored version; an id names one version already.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from opx_learning.core.snapshots import (
    SNAPSHOT_TYPES,
    Snapshot,
    check_snapshot_type,
    snapshot_id,
)
from opx_learning.core.windows import (
    Instant,
    Window,
    WindowError,
    iso,
    to_utc,
    to_utc_end,
)
from opx_learning.stores.snapshots import SnapshotStore

MIN_PREFIX = 8
_VERSION = re.compile(r"^(?P<ref>.+?)@v?(?P<version>\d+)$", re.IGNORECASE)
_HEX = re.compile(r"^[0-9a-f]+$")


class SnapshotNotFound(LookupError):
    """No stored snapshot matches a reference; the message names the reference and the store."""


@dataclass(frozen=True)
class Entry:
    """One stored snapshot version, known by its place in the store (not read yet)."""

    snapshot_type: str
    window: Window
    version: int

    @property
    def snapshot_id(self) -> str:
        """The id of this version."""
        return snapshot_id(self.snapshot_type, self.window, self.version)

    def describe(self) -> str:
        """`TYPE START..END vN`."""
        return f"{self.snapshot_type} {self.window.start_iso}..{self.window.end_iso} v{self.version}"


def entries(store: SnapshotStore) -> list[Entry]:
    """Every stored version, ordered by type, window and version, without reading the files."""
    return [Entry(kind, window, version) for kind, window, version in store.entries()]


def read(store: SnapshotStore, entry: Entry) -> Snapshot:
    """Read (and verify) one stored version."""
    return store.get(entry.snapshot_id)


def resolve(store: SnapshotStore, reference: str, version: int | None = None) -> Snapshot:
    """The stored snapshot a reference names.

    Args:
        store: the snapshot store.
        reference: an id, a unique id prefix (8+ hex digits) or `TYPE:START..END`, each
            optionally followed by `@vN`.
        version: another version of the same window (overrides `@vN`).

    Raises:
        ValueError: the reference is malformed (the message names it).
        SnapshotNotFound: nothing stored matches, the prefix is ambiguous, or the version is missing.
    """
    text = str(reference).strip()
    if not text:
        raise ValueError("snapshot: an id or TYPE:START..END is required")
    match = _VERSION.match(text)
    if match is not None:
        text = match["ref"]
        if version is None:
            version = int(match["version"])
    if version is not None and int(version) < 1:
        raise ValueError(f"version: {version!r} must be >= 1")
    known = entries(store)
    if ":" in text:
        kind, window = _parse_window(text)
        same = [e for e in known if e.snapshot_type == kind and e.window == window]
        if not same:
            raise SnapshotNotFound(
                f"snapshot: no {kind} snapshot of {window.start_iso}..{window.end_iso} is stored in {store.location}"
            )
    else:
        same = _by_id(known, text, store)
    if version is None:
        chosen = same[-1] if ":" in text else same[0]
    else:
        wanted = [e for e in same if e.version == int(version)]
        if not wanted:
            shown = ", ".join(f"v{e.version}" for e in same)
            raise SnapshotNotFound(f"version: {same[0].describe().rsplit(' ', 1)[0]} has no v{version} (stored: {shown})")
        chosen = wanted[0]
    return read(store, chosen)


def _by_id(known: list[Entry], text: str, store: SnapshotStore) -> list[Entry]:
    """Every version of the window whose id (or id prefix) is `text`, the named version first."""
    key = text.lower()
    if not _HEX.match(key) or len(key) < MIN_PREFIX:
        raise ValueError(
            f"snapshot: {text!r} is neither a snapshot id (or a prefix of at least {MIN_PREFIX} hex digits) "
            "nor TYPE:START..END (e.g. DAILY:2026-01-05..2026-01-06)"
        )
    matches = [e for e in known if e.snapshot_id.startswith(key)]
    if not matches:
        raise SnapshotNotFound(f"snapshot: no stored snapshot id starts with {text!r} in {store.location}")
    if len(matches) > 1:
        shown = ", ".join(f"{e.snapshot_id[:12]} ({e.describe()})" for e in matches[:5])
        raise SnapshotNotFound(f"snapshot: {text!r} matches {len(matches)} snapshots: {shown}; give more digits")
    named = matches[0]
    others = [e for e in known if (e.snapshot_type, e.window) == (named.snapshot_type, named.window) and e != named]
    return [named, *others]


def _parse_window(text: str) -> tuple[str, Window]:
    kind, _, span = text.partition(":")
    try:
        kind = check_snapshot_type(kind)
    except ValueError:
        raise ValueError(f"snapshot: {text!r}: type {kind!r} is not one of {', '.join(SNAPSHOT_TYPES)}") from None
    start, separator, end = span.partition("..")
    if not separator:
        raise ValueError(f"snapshot: {text!r} is not TYPE:START..END (e.g. DAILY:2026-01-05..2026-01-06)")
    try:
        return kind, Window.parse(start.strip(), end.strip())
    except WindowError as exc:
        raise ValueError(f"snapshot: {text!r}: {exc}") from None


def previous_of_cadence(store: SnapshotStore, snapshot: Snapshot) -> Snapshot | None:
    """The latest version of the nearest earlier window of the same type (ending at or before this one starts).

    For a DAILY snapshot that is normally the day before; if that day was never
    snapshotted, the nearest earlier stored day. None when there is none.
    """
    earlier = [
        e for e in entries(store)
        if e.snapshot_type == snapshot.snapshot_type and e.window.end <= snapshot.window_start
    ]
    if not earlier:
        return None
    chosen = max(earlier, key=lambda e: (e.window.end, e.window.start, e.version))
    return read(store, chosen)


def select(
    store: SnapshotStore,
    snapshot_type: str | None = None,
    since: Instant | None = None,
    until: Instant | None = None,
) -> list[Entry]:
    """Stored versions of one type (or all) whose window starts in `[since, until)`.

    Raises:
        ValueError: unknown type, unreadable bound or `until <= since` (the message names the field).
    """
    kind = None if snapshot_type is None else check_snapshot_type(snapshot_type)
    start: datetime | None = to_utc(since, "since") if since is not None else None
    end: datetime | None = to_utc_end(until, "until") if until is not None else None
    if start is not None and end is not None and end <= start:
        raise ValueError(f"until: {iso(end)} must be after since {iso(start)}")
    return [
        e for e in entries(store)
        if (kind is None or e.snapshot_type == kind)
        and (start is None or e.window.start >= start)
        and (end is None or e.window.start < end)
    ]


__all__ = ["Entry", "SnapshotNotFound", "entries", "previous_of_cadence", "resolve", "select"]
