"""What changed between two snapshots (docs/snapshots.md), for reviewers and the Dagster UI.

`diff_snapshots(a, b)` extends the structural diff of `core/snapshots.py` (counts, services,
ids, per-service counts and fp rate, calibration metrics) with:

- `root_causes`: root causes held in `b` and not in `a` (`new`) and the reverse (`retired`),
  over every service and per service. A snapshot holds each summary's top 10 root causes
  (docs/design.md#top-root-causes), so "retired" means "no longer among a service's top 10 in
  any held summary". Causes are compared by their normalised key (trimmed, whitespace collapsed, case-folded);
  `count` is the number of outcomes with that cause in the snapshot that holds it, over the
  summaries not nested in another held summary (a week and its days are not counted twice).
- `bands`: per calibration band whose figures differ, `n`, `accuracy`, `mean_confidence`
  and `drift` as `{from, to, delta}` (a band missing on one side has `None` there).
- `thresholds`: per band boundary whose recommended threshold moved, `{from, to, delta}`.

`diff_markdown(diff)` renders the changes as one Markdown table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from opx_learning.core.patterns import normalize_root_cause
from opx_learning.core.schema import ALL_SERVICES
from opx_learning.core.snapshots import Snapshot
from opx_learning.core.snapshots import diff_snapshots as structural_diff

_BAND_METRICS = ("n", "accuracy", "mean_confidence", "drift")
_MAX_ROWS = 60


def as_snapshot(value: Snapshot | Mapping[str, Any] | str | bytes) -> Snapshot:
    """A `Snapshot` from a snapshot, its `to_dict()` output or its JSON (verified).

    Raises:
        ValueError: the dict or JSON is not a consistent snapshot.
        TypeError: `value` is none of these.
    """
    if isinstance(value, Snapshot):
        return value
    if isinstance(value, Mapping):
        return Snapshot.from_dict(value)
    if isinstance(value, str | bytes):
        return Snapshot.from_json(value)
    raise TypeError(f"snapshot: {type(value).__name__} is not a Snapshot, a snapshot dict or snapshot JSON")


def diff_snapshots(
    a: Snapshot | Mapping[str, Any] | str | bytes, b: Snapshot | Mapping[str, Any] | str | bytes
) -> dict[str, Any]:
    """What changed from snapshot `a` to snapshot `b`, as a JSON-safe dict.

    Args:
        a: the earlier snapshot (a `Snapshot`, its `to_dict()` output or its JSON).
        b: the later snapshot.

    Returns:
        The structural diff of `core.snapshots.diff_snapshots` (`from`, `to`, `same_content`,
        `counts`, `services`, id changes, `service_metrics` with count and fp-rate changes per
        service, `calibration`) plus `root_causes` (`new`, `retired`, `by_service`), `bands`
        (changed band figures) and `thresholds` (moved recommended thresholds).

    Raises:
        ValueError, TypeError: an argument is not a (consistent) snapshot.
    """
    before, after = as_snapshot(a), as_snapshot(b)
    result = structural_diff(before, after)
    result["root_causes"] = _root_cause_changes(before.summaries, after.summaries)
    result["bands"] = _band_changes(before.calibration, after.calibration)
    result["thresholds"] = dict(result["calibration"]["recommended_thresholds"])
    return result


def _outer(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The rows whose window is not nested in another row's window."""
    spans = {(str(row["window_start"]), str(row["window_end"])) for row in rows}
    return [
        row
        for row in rows
        if not any(
            (start, end) != (str(row["window_start"]), str(row["window_end"]))
            and start <= str(row["window_start"])
            and str(row["window_end"]) <= end
            for start, end in spans
        )
    ]


def _root_causes(summaries: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, tuple[str, int]]]:
    """service -> normalised cause -> (display name, outcome count), services other than `ALL`."""
    by_service: dict[str, list[Mapping[str, Any]]] = {}
    for summary in summaries:
        service = str(summary["service"])
        if service != ALL_SERVICES:
            by_service.setdefault(service, []).append(summary)
    causes: dict[str, dict[str, tuple[str, int]]] = {}
    for service, rows in by_service.items():
        found: dict[str, tuple[str, int]] = {}
        for row in _outer(rows):
            for item in row.get("top_root_causes") or ():
                value = item.get("value")
                if value is None:
                    continue
                key = normalize_root_cause(str(value))
                name, count = found.get(key, (str(value), 0))
                found[key] = (name, count + int(item.get("count") or 0))
        causes[service] = found
    return causes


def _root_cause_changes(
    before: Sequence[Mapping[str, Any]], after: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    old, new = _root_causes(before), _root_causes(after)
    by_service: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for service in sorted(set(old) | set(new)):
        was, now = old.get(service, {}), new.get(service, {})
        added = [{"root_cause": now[key][0], "count": now[key][1]} for key in sorted(set(now) - set(was))]
        retired = [{"root_cause": was[key][0], "count": was[key][1]} for key in sorted(set(was) - set(now))]
        if added or retired:
            by_service[service] = {"new": added, "retired": retired}

    def overall(side: dict[str, dict[str, tuple[str, int]]]) -> dict[str, tuple[str, int, list[str]]]:
        merged: dict[str, tuple[str, int, list[str]]] = {}
        for service in sorted(side):
            for key, (name, count) in side[service].items():
                shown, total, services = merged.get(key, (name, 0, []))
                merged[key] = (shown, total + count, [*services, service])
        return merged

    was_all, now_all = overall(old), overall(new)

    def listed(side: dict[str, tuple[str, int, list[str]]], keys: set[str]) -> list[dict[str, Any]]:
        return [{"root_cause": side[k][0], "count": side[k][1], "services": side[k][2]} for k in sorted(keys)]

    return {
        "new": listed(now_all, set(now_all) - set(was_all)),
        "retired": listed(was_all, set(was_all) - set(now_all)),
        "by_service": by_service,
    }


def _bands(calibration: Mapping[str, Any] | None) -> dict[str, Mapping[str, Any]]:
    return {str(band["band"]): band for band in (calibration or {}).get("bands") or () if "band" in band}


def _change(before: Any, after: Any) -> dict[str, Any]:
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (before, after))
    return {"from": before, "to": after, "delta": (after - before) if numeric else None}


def _band_changes(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> dict[str, Any]:
    old, new = _bands(before), _bands(after)
    order = ("VERY_LOW", "LOW", "MEDIUM", "HIGH", "VERY_HIGH")
    changed: dict[str, Any] = {}
    for band in sorted(set(old) | set(new), key=lambda b: (order.index(b) if b in order else len(order), b)):
        was, now = old.get(band, {}), new.get(band, {})
        if any(was.get(metric) != now.get(metric) for metric in _BAND_METRICS):
            changed[band] = {metric: _change(was.get(metric), now.get(metric)) for metric in _BAND_METRICS}
    return changed


def _number(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return str(value) if isinstance(value, int) else f"{value:.{digits}f}"


def _delta(change: Mapping[str, Any], digits: int = 3) -> str:
    delta = change.get("delta")
    if delta is None:
        if change.get("from") is None and change.get("to") is not None:
            return "new"
        if change.get("to") is None and change.get("from") is not None:
            return "gone"
        return "changed"
    return f"{delta:+d}" if isinstance(delta, int) else f"{delta:+.{digits}f}"


def _label(identity: Mapping[str, Any]) -> str:
    return (
        f"{identity['snapshot_type']} {identity['window_start']}..{identity['window_end']} v{identity['version']}"
    )


def diff_rows(diff: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    """The changes of a diff as `(item, before, after, change)` rows, most important first."""
    rows: list[tuple[str, str, str, str]] = []
    for key, change in diff["counts"].items():
        if change["from"] != change["to"]:
            rows.append((key, _number(change["from"]), _number(change["to"]), _delta(change)))
    for service in diff["services"]["added"]:
        rows.append((f"service {service}", "–", "present", "new"))
    for service in diff["services"]["removed"]:
        rows.append((f"service {service}", "present", "–", "gone"))
    for service, metrics in diff["service_metrics"].items():
        incidents, fp_rate = metrics["total_incidents"], metrics["fp_rate"]
        if incidents["from"] != incidents["to"]:
            rows.append((f"{service}: incidents", _number(incidents["from"]), _number(incidents["to"]),
                         _delta(incidents)))
        if fp_rate["from"] != fp_rate["to"]:
            rows.append((f"{service}: fp rate", _number(fp_rate["from"]), _number(fp_rate["to"]), _delta(fp_rate)))
    for item in diff["root_causes"]["new"]:
        where = ", ".join(item["services"])
        rows.append((f"root cause {item['root_cause']!r}", "–", f"{item['count']} ({where})", "new"))
    for item in diff["root_causes"]["retired"]:
        where = ", ".join(item["services"])
        rows.append((f"root cause {item['root_cause']!r}", f"{item['count']} ({where})", "–", "retired"))
    for band, metrics in diff["bands"].items():
        accuracy, n = metrics["accuracy"], metrics["n"]
        rows.append((f"band {band} accuracy (n)", f"{_number(accuracy['from'])} ({_number(n['from'])})",
                     f"{_number(accuracy['to'])} ({_number(n['to'])})", _delta(accuracy)))
    for boundary, change in diff["thresholds"].items():
        rows.append((f"threshold {boundary}", _number(change["from"], 4), _number(change["to"], 4),
                     _delta(change, 4)))
    return rows


def _cell(text: str) -> str:
    """A table cell: pipes escaped, on one line."""
    return " ".join(str(text).replace("|", "\\|").split())


def diff_markdown(diff: Mapping[str, Any], title: str | None = None) -> str:
    """The diff as Markdown: a heading line and one table of what changed (at most 60 rows).

    Args:
        diff: the output of `diff_snapshots`.
        title: the heading (default: "`to` against `from`").
    """
    heading = title or f"**{_label(diff['to'])}** against **{_label(diff['from'])}**"
    rows = diff_rows(diff)
    if not rows:
        same = "same content" if diff.get("same_content") else "no change in counts, services, root causes or bands"
        return f"{heading}\n\nNo change ({same})."
    lines = [heading, "", "| item | before | after | change |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(_cell(cell) for cell in row) + " |" for row in rows[:_MAX_ROWS]]
    if len(rows) > _MAX_ROWS:
        lines.append(f"| … {len(rows) - _MAX_ROWS} more changes | | | |")
    return "\n".join(lines)


__all__ = ["as_snapshot", "diff_markdown", "diff_rows", "diff_snapshots"]
