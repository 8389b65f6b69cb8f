"""Materialization metadata of a stored snapshot: its diff against the previous snapshot of its cadence.

The diff itself is `core/snapshot_diff.py`; this is the snapshot assets' Dagster metadata of it.
"""

from __future__ import annotations

import logging
from typing import Any

import dagster as dg

from opx_learning.core.schema import ALL_SERVICES
from opx_learning.core.snapshot_diff import diff_markdown, diff_snapshots
from opx_learning.core.snapshots import Snapshot
from opx_learning.stores.snapshot_refs import previous_of_cadence
from opx_learning.stores.snapshots import SnapshotStore

_log = logging.getLogger("opx_learning.snapshots")


def snapshot_diff_metadata(store: SnapshotStore, snapshot: Snapshot, just_stored: Snapshot | None = None) -> dict[str, Any]:
    """Metadata comparing `snapshot` with the latest version of the nearest earlier window of its type.

    Never raises: a previous snapshot that cannot be read (its integrity failure already
    raised the P0 alert) is reported in the metadata instead of failing the materialization.

    Args:
        store: the snapshot store `snapshot` was appended to.
        snapshot: the stored snapshot.
        just_stored: the snapshot this run stored before `snapshot` (a range run goes window by
            window); when it is the window just before, it is the previous one and the store is
            not searched.

    Returns:
        `diff` (Markdown table), `diff_against` (previous snapshot id or "-") and counts of
        what changed (`diff_new_root_causes`, `diff_retired_root_causes`,
        `diff_services_changed`, `diff_bands_changed`, `diff_thresholds_moved`).
    """
    try:
        adjacent = (
            just_stored is not None
            and just_stored.snapshot_type == snapshot.snapshot_type
            and just_stored.window_end == snapshot.window_start
        )
        previous = just_stored if adjacent else previous_of_cadence(store, snapshot)
    except Exception as error:  # noqa: BLE001 - the diff is informational; the snapshot is stored
        _log.warning("previous %s snapshot unreadable: %s", snapshot.snapshot_type, error)
        return {"diff_against": "-", "diff": dg.MetadataValue.md(f"Previous snapshot unreadable: {error}")}
    if previous is None:
        text = f"No earlier {snapshot.snapshot_type} snapshot is stored: nothing to compare."
        return {"diff_against": "-", "diff": dg.MetadataValue.md(text)}
    diff = diff_snapshots(previous, snapshot)
    gap = previous.window_end != snapshot.window_start
    title = (
        f"Against the previous {snapshot.snapshot_type.lower()} snapshot "
        f"{previous.window.start_iso}..{previous.window.end_iso} v{previous.version}"
        + (" (the windows in between were never snapshotted)" if gap else "")
    )
    return {
        "diff_against": previous.snapshot_id,
        "diff": dg.MetadataValue.md(diff_markdown(diff, f"**{title}**")),
        "diff_new_root_causes": len(diff["root_causes"]["new"]),
        "diff_retired_root_causes": len(diff["root_causes"]["retired"]),
        "diff_services_changed": sum(1 for service in diff["service_metrics"] if service != ALL_SERVICES),
        "diff_bands_changed": len(diff["bands"]),
        "diff_thresholds_moved": len(diff["thresholds"]),
    }


__all__ = ["snapshot_diff_metadata"]
