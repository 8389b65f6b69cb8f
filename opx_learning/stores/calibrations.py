"""Reading stored calibrations back: a month's `confidence_calibration` partition, or any by its id."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from opx_learning.config import Settings

MONTHLY = "confidence_calibration"
CUSTOM = "confidence_calibration_custom"
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


def month_partition(month: str) -> str:
    """The monthly partition key (`YYYY-MM-01`) of a `YYYY-MM` month.

    Raises:
        ValueError: not `YYYY-MM` with a month 01..12 (the message names the value).
    """
    match = _MONTH.match(str(month).strip())
    if match is None or not 1 <= int(match.group(2)) <= 12:
        raise ValueError(f"month: {month!r} is not a month YYYY-MM (e.g. 2026-01)")
    return f"{match.group(1)}-{match.group(2)}-01"


def _storage(settings: Settings) -> Any:
    from opx_learning.backends import backend_for

    return backend_for(settings).asset_storage()


def monthly_calibration(month: str, settings: Settings) -> tuple[dict[str, Any], dict[str, Any]]:
    """The stored calibration of a month and where it was read (`asset`, `partition`, `month`, `uri`).

    Raises:
        ValueError: bad month, or the month has no stored calibration (the message says how to make one).
    """
    key = month_partition(month)
    storage = _storage(settings)
    found = storage.read(MONTHLY, key)
    if found is None:
        year, number = int(key[:4]), int(key[5:7])
        following = f"{year + number // 12}-{number % 12 + 1:02d}-01"
        raise ValueError(
            f"month: {month} has no stored calibration ({storage.uri(MONTHLY, key, 'json')}); run "
            f"`opx-learning trigger calibrate --start {key} --end {following}` first"
        )
    return dict(found), {"asset": MONTHLY, "partition": key, "month": key[:7], "uri": storage.uri(MONTHLY, key, "json")}


def _partitions(storage: Any, asset: str, settings: Settings) -> list[str]:
    base = storage.resolved_base()
    if base.startswith("s3://"):
        from opx_learning.backends import backend_for
        from opx_learning.stores.blobs import list_keys

        client = backend_for(settings).blob_client()
        names = [key.rsplit("/", 1)[-1] for key in list_keys(f"{base}/{asset}/", client=client)]
    else:
        folder = Path(base) / asset
        names = [path.name for path in folder.iterdir()] if folder.is_dir() else []
    return sorted(name.removesuffix(".json") for name in names if name.endswith(".json"))


def calibration_by_id(calibration_id: str, settings: Settings) -> tuple[dict[str, Any], dict[str, Any]]:
    """The stored monthly or custom calibration with this id (or a unique prefix of 8+ characters).

    Raises:
        ValueError: no stored calibration has it, or the prefix is ambiguous.
    """
    wanted = str(calibration_id).strip().lower()
    if len(wanted) < 8:
        raise ValueError(f"calibration: {calibration_id!r} is too short; give the id or at least 8 of its characters")
    storage = _storage(settings)
    matches = []
    for asset in (MONTHLY, CUSTOM):
        for key in _partitions(storage, asset, settings):
            found = storage.read(asset, key)
            if isinstance(found, dict) and str(found.get("calibration_id", "")).lower().startswith(wanted):
                matches.append((found, {"asset": asset, "partition": key, "uri": storage.uri(asset, key, "json")}))
    if not matches:
        raise ValueError(
            f"calibration: no stored calibration has id {calibration_id!r} "
            f"(searched {storage.resolved_base()}/{MONTHLY} and /{CUSTOM})"
        )
    ids = {found["calibration_id"] for found, _ in matches}
    if len(ids) > 1:
        raise ValueError(f"calibration: {calibration_id!r} matches {len(ids)} calibrations; give more characters")
    return matches[0]


__all__ = ["calibration_by_id", "month_partition", "monthly_calibration"]
