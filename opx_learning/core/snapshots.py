"""Immutable, versioned snapshots of the learned state of one window (docs/design.md#snapshots).

A snapshot of `[start, end)` holds:

- `counts`: outcomes recorded in the window (half-open on `recorded_at`), pattern
  summaries whose own `[window_start, window_end)` lies inside the window, and
  calibrations whose window lies inside it;
- `services`: the services seen in those outcomes or summaries (`"ALL"` excluded);
- the ids of those outcomes (sorted), summaries and calibrations;
- the learned state: the summaries themselves as JSON-safe dicts, and the latest
  calibration known at the snapshot's end — the one with the latest `window_end`
  that is `<= end`. It may come from before the window (a daily snapshot carries
  the previous month's calibration); `created_from["calibration_before_window"]`
  says so.

`snapshot_id` is the SHA-256 of `"{type}:{start}:{end}:{version}"`; `content_hash`
is the SHA-256 of the canonical JSON (sorted keys, no whitespace) of everything
but `snapshot_id`, `version`, `created_at` and `content_hash`. Both depend only on
the inputs, never on their row order, so re-running an unchanged window gives the
same id and hash.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any

import polars as pl

from opx_learning.core.schema import ALGORITHM_VERSION, ALL_SERVICES
from opx_learning.core.windows import Instant, Window, iso, to_utc

SNAPSHOT_TYPES = ("DAILY", "WEEKLY", "MONTHLY", "CUSTOM")
COUNT_KEYS = ("outcomes", "summaries", "calibrations")
ID_KEYS = ("outcome_ids", "summary_ids", "calibration_ids")
# Fields outside the content hash: identity and bookkeeping, not learned state.
_NOT_CONTENT = frozenset({"snapshot_id", "version", "created_at", "content_hash"})
_SERVICE_METRICS = ("total_incidents", "true_positives", "false_positives", "fp_rate")
_CALIBRATION_METRICS = ("ece", "mce", "brier", "max_abs_drift", "drift", "outcome_count", "skipped_count")
_DIFF_SAMPLE = 10


def snapshot_id(snapshot_type: str, window: Window, version: int) -> str:
    """The deterministic id of a snapshot: SHA-256 of `"{type}:{start}:{end}:{version}"`."""
    key = f"{snapshot_type}:{window.start_iso}:{window.end_iso}:{version}"
    return hashlib.sha256(key.encode()).hexdigest()


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: the byte form the content hash covers."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def content_hash(content: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a snapshot's content."""
    return hashlib.sha256(canonical_json(content).encode()).hexdigest()


def check_snapshot_type(snapshot_type: str) -> str:
    """Return the upper-cased snapshot type, or raise ValueError naming the bad value."""
    normalized = str(snapshot_type).strip().upper()
    if normalized not in SNAPSHOT_TYPES:
        raise ValueError(f"snapshot_type: {snapshot_type!r} is not one of {', '.join(SNAPSHOT_TYPES)}")
    return normalized


@dataclass(frozen=True)
class Snapshot:
    """One immutable version of the learned state of a window.

    Attributes:
        snapshot_id: SHA-256 of `"{type}:{start}:{end}:{version}"`.
        snapshot_type: DAILY, WEEKLY, MONTHLY or CUSTOM.
        window_start: inclusive UTC start.
        window_end: exclusive UTC end.
        version: 1 for the first stored version of a window, then +1 per content change.
        content_hash: SHA-256 of the canonical JSON of the content.
        counts: `{"outcomes", "summaries", "calibrations"}` counted in the window.
        services: sorted services with outcomes or summaries in the window.
        outcome_ids: sorted ids of the window's outcomes.
        summary_ids: ids of the held summaries, in `summaries` order.
        calibration_ids: sorted ids of the calibrations whose window lies in this one.
        summaries: the pattern summaries as JSON-safe dicts, sorted by window, then
            `"ALL"` first, then service.
        calibration: the latest calibration known at `window_end` (JSON-safe dict), or None.
        created_from: provenance: algorithm version, latest calibration id and window,
            and whether that calibration predates the window.
        created_at: when this object was built (not part of the content hash).
    """

    snapshot_id: str
    snapshot_type: str
    window_start: datetime
    window_end: datetime
    version: int
    content_hash: str
    counts: dict[str, int]
    services: tuple[str, ...]
    outcome_ids: tuple[str, ...]
    summary_ids: tuple[str, ...]
    calibration_ids: tuple[str, ...]
    summaries: tuple[dict[str, Any], ...]
    calibration: dict[str, Any] | None
    created_from: dict[str, Any] = field(default_factory=dict)
    created_at: datetime = field(default_factory=lambda: _to_millis(datetime.now(UTC)))

    @property
    def window(self) -> Window:
        """The snapshot's half-open window."""
        return Window(self.window_start, self.window_end)

    @property
    def empty(self) -> bool:
        """Whether no outcome fell in the window (its summaries are then only zero `ALL` rows)."""
        return self.counts.get("outcomes", 0) == 0

    def content(self) -> dict[str, Any]:
        """The JSON-safe content that `content_hash` covers."""
        return {key: value for key, value in self.to_dict().items() if key not in _NOT_CONTENT}

    def with_version(self, version: int) -> Snapshot:
        """The same content stored as another version (new `snapshot_id`, same `content_hash`)."""
        return replace(self, version=version, snapshot_id=snapshot_id(self.snapshot_type, self.window, version))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict of every field."""
        return {
            "snapshot_id": self.snapshot_id,
            "snapshot_type": self.snapshot_type,
            "window_start": iso(self.window_start),
            "window_end": iso(self.window_end),
            "version": self.version,
            "content_hash": self.content_hash,
            "created_at": iso(self.created_at),
            "counts": dict(self.counts),
            "services": list(self.services),
            "ids": {
                "outcome_ids": list(self.outcome_ids),
                "summary_ids": list(self.summary_ids),
                "calibration_ids": list(self.calibration_ids),
            },
            "summaries": [dict(summary) for summary in self.summaries],
            "calibration": None if self.calibration is None else dict(self.calibration),
            "created_from": dict(self.created_from),
        }

    def to_json(self, indent: int | None = None) -> str:
        """The snapshot as JSON with sorted keys (compact unless `indent` is given)."""
        if indent is None:
            return canonical_json(self.to_dict())
        return json.dumps(self.to_dict(), sort_keys=True, indent=indent, ensure_ascii=False, allow_nan=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], verify: bool = True) -> Snapshot:
        """Rebuild a snapshot from `to_dict()` output.

        Args:
            data: a dict as produced by `to_dict()` (or parsed from `to_json()`).
            verify: recompute the id and content hash and refuse a mismatch.

        Raises:
            ValueError: a required field is missing, or `verify` finds a mismatch.
        """
        try:
            ids = data["ids"]
            snapshot = cls(
                snapshot_id=data["snapshot_id"],
                snapshot_type=check_snapshot_type(data["snapshot_type"]),
                window_start=to_utc(data["window_start"], "window_start"),
                window_end=to_utc(data["window_end"], "window_end"),
                version=int(data["version"]),
                content_hash=data["content_hash"],
                counts={key: int(value) for key, value in data["counts"].items()},
                services=tuple(data["services"]),
                outcome_ids=tuple(ids["outcome_ids"]),
                summary_ids=tuple(ids["summary_ids"]),
                calibration_ids=tuple(ids["calibration_ids"]),
                summaries=tuple(dict(summary) for summary in data["summaries"]),
                calibration=None if data.get("calibration") is None else dict(data["calibration"]),
                created_from=dict(data.get("created_from") or {}),
                created_at=to_utc(data["created_at"], "created_at"),
            )
        except KeyError as missing:
            raise ValueError(f"snapshot: missing field {missing.args[0]!r}") from None
        if verify:
            expected_id = snapshot_id(snapshot.snapshot_type, snapshot.window, snapshot.version)
            if snapshot.snapshot_id != expected_id:
                raise ValueError(f"snapshot_id: {snapshot.snapshot_id!r} does not match its type, window and version")
            actual = content_hash(snapshot.content())
            if snapshot.content_hash != actual:
                raise ValueError(f"content_hash: {snapshot.content_hash!r} does not match the content ({actual})")
        return snapshot

    @classmethod
    def from_json(cls, text: str | bytes, verify: bool = True) -> Snapshot:
        """Rebuild a snapshot from `to_json()` output."""
        return cls.from_dict(json.loads(text), verify=verify)


def build_snapshot(
    snapshot_type: str,
    start: Instant,
    end: Instant,
    outcomes: pl.DataFrame | pl.LazyFrame | None,
    summaries: pl.DataFrame | pl.LazyFrame | Sequence[Mapping[str, Any]] | None,
    calibrations: Iterable[Any] = (),
    version: int = 1,
    *,
    created_at: datetime | None = None,
) -> Snapshot:
    """Build the snapshot of `[start, end)` from outcomes, pattern summaries and calibrations.

    Args:
        snapshot_type: DAILY, WEEKLY, MONTHLY or CUSTOM (case-insensitive).
        start: window start (date, datetime or ISO-8601 string).
        end: window end, exclusive (`...T23:59:59.999Z` means end of that day).
        outcomes: canonical outcomes (only `outcome_id`, `service`, `recorded_at` are read);
            rows outside the window are ignored.
        summaries: `extract_patterns` output (possibly several windows concatenated) or
            its rows as dicts; only summaries whose window lies in `[start, end)` are held.
        calibrations: `Calibration` objects or their `to_dict()` output, any windows.
        version: the version number this snapshot is built as.
        created_at: bookkeeping timestamp (default now); not part of the content hash.

    Returns:
        The snapshot; with nothing in the window it is valid and `empty`.

    Raises:
        ValueError: unknown snapshot type, unreadable window or version < 1.
    """
    kind = check_snapshot_type(snapshot_type)
    window = Window.parse(start, end)
    if int(version) < 1:
        raise ValueError(f"version: {version!r} must be >= 1")
    version = int(version)

    outcome_ids, outcome_services = _window_outcomes(outcomes, window)
    summary_rows = _window_summaries(summaries, window)
    all_calibrations = [_calibration_dict(item) for item in calibrations]
    in_window = sorted(
        (cal for cal in all_calibrations if _calibration_within(cal, window)),
        key=lambda cal: str(cal.get("calibration_id")),
    )
    latest = _latest_calibration(all_calibrations, window)

    services = sorted(
        (outcome_services | {str(row["service"]) for row in summary_rows}) - {ALL_SERVICES}
    )
    snapshot = Snapshot(
        snapshot_id=snapshot_id(kind, window, version),
        snapshot_type=kind,
        window_start=window.start,
        window_end=window.end,
        version=version,
        content_hash="",
        counts={"outcomes": len(outcome_ids), "summaries": len(summary_rows), "calibrations": len(in_window)},
        services=tuple(services),
        outcome_ids=tuple(outcome_ids),
        summary_ids=tuple(str(row.get("summary_id")) for row in summary_rows),
        calibration_ids=tuple(str(cal.get("calibration_id")) for cal in in_window),
        summaries=tuple(summary_rows),
        calibration=latest,
        created_from={
            "algorithm_version": ALGORITHM_VERSION,
            "calibration_id": None if latest is None else latest.get("calibration_id"),
            "calibration_window_end": None if latest is None else latest.get("window_end"),
            "calibration_before_window": None if latest is None else _calibration_start(latest) < window.start,
        },
        created_at=_to_millis(to_utc(created_at, "created_at") if created_at is not None else datetime.now(UTC)),
    )
    return replace(snapshot, content_hash=content_hash(snapshot.content()))


def diff_snapshots(a: Snapshot, b: Snapshot) -> dict[str, Any]:
    """What changed from snapshot `a` to snapshot `b`, as a JSON-safe dict.

    Per-service metrics are taken over each snapshot's summaries of that service,
    ignoring a summary whose window lies inside another held summary's window (so
    a weekly summary is not double counted with its days); the remaining
    summaries' counts are added and `fp_rate` recomputed from the sums.

    Returns:
        `from`/`to` (identity), `same_content`, `counts` (from, to, delta per key),
        `services` (added, removed), `outcome_ids`/`summary_ids`/`calibration_ids`
        (added/removed counts and up to 10 sorted samples), `service_metrics`
        (from, to, delta of every key metric, for services where any changed), `calibration`
        (ids, `changed`, metric and recommended-threshold changes).
    """
    counts = {key: _change(a.counts.get(key, 0), b.counts.get(key, 0)) for key in COUNT_KEYS}
    a_services, b_services = set(a.services), set(b.services)
    result: dict[str, Any] = {
        "from": _identity(a),
        "to": _identity(b),
        "same_content": a.content_hash == b.content_hash,
        "counts": counts,
        "services": {"added": sorted(b_services - a_services), "removed": sorted(a_services - b_services)},
    }
    for key in ID_KEYS:
        result[key] = _id_changes(getattr(a, key), getattr(b, key))

    a_metrics, b_metrics = _service_metrics(a.summaries), _service_metrics(b.summaries)
    service_metrics: dict[str, Any] = {}
    for service in sorted(set(a_metrics) | set(b_metrics), key=lambda s: (s != ALL_SERVICES, s)):
        before, after = a_metrics.get(service, {}), b_metrics.get(service, {})
        if any(before.get(metric) != after.get(metric) for metric in _SERVICE_METRICS):
            service_metrics[service] = {
                metric: _change(before.get(metric), after.get(metric)) for metric in _SERVICE_METRICS
            }
    result["service_metrics"] = service_metrics
    result["calibration"] = _calibration_changes(a.calibration, b.calibration)
    return result


def _to_millis(instant: datetime) -> datetime:
    """Truncate to milliseconds, the precision of the ISO form, so JSON round trips are exact."""
    return instant.replace(microsecond=instant.microsecond // 1000 * 1000)


def _window_outcomes(outcomes: pl.DataFrame | pl.LazyFrame | None, window: Window) -> tuple[list[str], set[str]]:
    if outcomes is None:
        return [], set()
    frame = outcomes.lazy()
    recorded = pl.col("recorded_at")
    dtype = frame.collect_schema()["recorded_at"]
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is None:
        recorded = recorded.dt.replace_time_zone("UTC")
    in_window = (
        frame.filter((recorded >= window.start) & (recorded < window.end))
        .select(pl.col("outcome_id").cast(pl.String), pl.col("service").cast(pl.String))
        .collect()
    )
    ids = in_window.get_column("outcome_id").unique().sort().to_list()
    services = set(in_window.get_column("service").unique().to_list())
    return ids, services


def _window_summaries(
    summaries: pl.DataFrame | pl.LazyFrame | Sequence[Mapping[str, Any]] | None, window: Window
) -> list[dict[str, Any]]:
    if summaries is None:
        return []
    if isinstance(summaries, pl.LazyFrame):
        summaries = summaries.collect()
    rows = summaries.to_dicts() if isinstance(summaries, pl.DataFrame) else [dict(row) for row in summaries]
    held = []
    for row in rows:
        row_start, row_end = to_utc(row["window_start"], "window_start"), to_utc(row["window_end"], "window_end")
        if row_start >= window.start and row_end <= window.end:
            held.append(_json_safe({**row, "window_start": row_start, "window_end": row_end}))
    held.sort(
        key=lambda row: (
            row["window_start"],
            row["window_end"],
            row["service"] != ALL_SERVICES,
            str(row["service"]),
            str(row.get("version")),
            str(row.get("summary_id")),
        )
    )
    return held


class PreparedCalibration(dict):
    """A calibration already checked and made JSON-safe by `prepare_calibrations` (not converted again)."""


def prepare_calibrations(calibrations: Iterable[Any]) -> list[PreparedCalibration]:
    """Check and convert calibrations once, for many `build_snapshot` calls over the windows of a range.

    Raises:
        TypeError, ValueError: as `build_snapshot` for an unusable calibration.
    """
    return [PreparedCalibration(_calibration_dict(item)) for item in calibrations]


def _calibration_dict(item: Any) -> dict[str, Any]:
    if isinstance(item, PreparedCalibration):
        return item
    data = item.to_dict() if hasattr(item, "to_dict") else item
    if not isinstance(data, Mapping):
        raise TypeError(f"calibrations: {type(item).__name__} is neither a Calibration nor a dict")
    for key in ("calibration_id", "window_start", "window_end"):
        if key not in data:
            raise ValueError(f"calibrations: missing field {key!r}")
    start, end = to_utc(data["window_start"], "window_start"), to_utc(data["window_end"], "window_end")
    return _json_safe({**data, "window_start": start, "window_end": end})


def _calibration_start(calibration: Mapping[str, Any]) -> datetime:
    return to_utc(calibration["window_start"], "window_start")


def _calibration_end(calibration: Mapping[str, Any]) -> datetime:
    return to_utc(calibration["window_end"], "window_end")


def _calibration_within(calibration: Mapping[str, Any], window: Window) -> bool:
    return _calibration_start(calibration) >= window.start and _calibration_end(calibration) <= window.end


def _latest_calibration(calibrations: Sequence[dict[str, Any]], window: Window) -> dict[str, Any] | None:
    known = [cal for cal in calibrations if _calibration_end(cal) <= window.end]
    if not known:
        return None
    # Latest end wins; ties go to the longer window, then the larger id, so the pick is order-free.
    return max(
        known,
        key=lambda cal: (_calibration_end(cal), -_calibration_start(cal).timestamp(), str(cal["calibration_id"])),
    )


_PLAIN = frozenset({str, int, bool, type(None)})


def _json_safe(value: Any) -> Any:
    """Convert polars / Python values to JSON-safe ones: ISO instants, lists, None for NaN, 12-digit floats."""
    # Exact built-in types first (most values of a summary row): the same results as the general
    # branches below, without their abstract-class checks.
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is float:
        return float(f"{value:.12g}") if math.isfinite(value) else None
    if kind is dict:
        return {str(key): _json_safe(item) for key, item in value.items()}
    if kind is list:
        return [_json_safe(item) for item in value]
    if isinstance(value, Mapping):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, datetime):
        return iso(to_utc(value))
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        # 12 significant digits: the last bits of a mean depend on how polars sliced the data,
        # and must not make an unchanged window look changed (a new snapshot version).
        return float(f"{value:.12g}") if math.isfinite(value) else None
    if isinstance(value, pl.DataFrame):
        return [_json_safe(row) for row in value.to_dicts()]
    if isinstance(value, pl.Series):
        return [_json_safe(item) for item in value.to_list()]
    if isinstance(value, list | tuple | set | frozenset):
        items = [_json_safe(item) for item in value]
        return sorted(items, key=canonical_json) if isinstance(value, set | frozenset) else items
    if value is None or isinstance(value, str | int | bool):
        return value
    if hasattr(value, "item"):
        return _json_safe(value.item())
    return str(value)


def _identity(snapshot: Snapshot) -> dict[str, Any]:
    return {
        "snapshot_id": snapshot.snapshot_id,
        "snapshot_type": snapshot.snapshot_type,
        "window_start": iso(snapshot.window_start),
        "window_end": iso(snapshot.window_end),
        "version": snapshot.version,
        "content_hash": snapshot.content_hash,
    }


def _change(before: Any, after: Any) -> dict[str, Any]:
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (before, after))
    return {"from": before, "to": after, "delta": (after - before) if numeric else None}


def _id_changes(before: Sequence[str], after: Sequence[str]) -> dict[str, Any]:
    old, new = set(before), set(after)
    added, removed = sorted(new - old), sorted(old - new)
    return {
        "added": len(added),
        "removed": len(removed),
        "added_sample": added[:_DIFF_SAMPLE],
        "removed_sample": removed[:_DIFF_SAMPLE],
    }


def _service_metrics(summaries: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    by_service: dict[str, list[Mapping[str, Any]]] = {}
    for summary in summaries:
        by_service.setdefault(str(summary["service"]), []).append(summary)
    metrics: dict[str, dict[str, Any]] = {}
    for service, rows in by_service.items():
        spans = {(str(row["window_start"]), str(row["window_end"])) for row in rows}
        outer = [
            row
            for row in rows
            if not any(
                (start, end) != (row["window_start"], row["window_end"])
                and start <= row["window_start"]
                and row["window_end"] <= end
                for start, end in spans
            )
        ]
        total = sum(int(row.get("total_incidents") or 0) for row in outer)
        true_positives = sum(int(row.get("true_positives") or 0) for row in outer)
        false_positives = sum(int(row.get("false_positives") or 0) for row in outer)
        metrics[service] = {
            "total_incidents": total,
            "true_positives": true_positives,
            "false_positives": false_positives,
            "fp_rate": false_positives / total if total else None,
        }
    return metrics


def _calibration_changes(
    before: Mapping[str, Any] | None, after: Mapping[str, Any] | None
) -> dict[str, Any]:
    old, new = before or {}, after or {}
    result: dict[str, Any] = {
        "from_id": old.get("calibration_id"),
        "to_id": new.get("calibration_id"),
        "changed": old.get("calibration_id") != new.get("calibration_id") or canonical_json(old) != canonical_json(new),
    }
    result["metrics"] = {
        metric: _change(old.get(metric), new.get(metric))
        for metric in _CALIBRATION_METRICS
        if old.get(metric) != new.get(metric)
    }
    if old.get("drift_detected") != new.get("drift_detected"):
        result["metrics"]["drift_detected"] = {
            "from": old.get("drift_detected"),
            "to": new.get("drift_detected"),
            "delta": None,
        }
    old_thresholds = old.get("recommended_thresholds") or {}
    new_thresholds = new.get("recommended_thresholds") or {}
    result["recommended_thresholds"] = {
        boundary: _change(old_thresholds.get(boundary), new_thresholds.get(boundary))
        for boundary in sorted(set(old_thresholds) | set(new_thresholds))
        if old_thresholds.get(boundary) != new_thresholds.get(boundary)
    }
    return result
