"""Monitoring of the monitors (docs/monitoring.md): heartbeats of sensor and schedule ticks and when one is stale.

Every tick of a sensor or schedule of the code location leaves a `Heartbeat` (see
`opx_learning.defs.monitors`, which stores it in the Dagster instance). This module
judges them, with no Dagster import:

* a RUNNING sensor is stale when its last successful tick is more than 5 minutes old
  (counted from when it was started, if that is later);
* a RUNNING schedule is stale when its latest cron time more than 5 minutes ago has no
  successful tick at or after it (unless the schedule was started after that time);
* a sensor whose cursor follows the audit trail (the alert sensor) is stale when the
  newest audit change is more than 10 minutes past its cursor;
* a STOPPED instigator is never stale; an instigator with no heartbeat at all is judged
  from the first heartbeat recorded on the instance (nothing has ever ticked there:
  no daemon has run yet, which is not an alarm of its own).

A stale instigator raises one P1 `MONITOR_STALE` per stale episode: the episode is
named by the last successful tick (or the missed cron time, or the lagging cursor
position), so the alert repeats only after the instigator ticked again and went
stale again.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from opx_learning.alerts.models import Alert
from opx_learning.core.windows import iso, to_utc

MONITOR_STALE = "MONITOR_STALE"
STALE_AFTER = timedelta(minutes=5)
CURSOR_LAG_LIMIT = timedelta(minutes=10)
SENSOR, SCHEDULE = "sensor", "schedule"
RUNNING, STOPPED = "RUNNING", "STOPPED"
CURSOR_CHARS = 200


def _when(value: Any) -> datetime | None:
    return to_utc(value, "heartbeat time") if value else None


@dataclass(frozen=True)
class Heartbeat:
    """The last tick of one sensor or schedule.

    `tick_time` is when the tick ran (a schedule's cron time), `last_ok` the last tick
    that completed without error, `first_tick` the first heartbeat ever recorded for
    it, `audit_cursor` the audit-trail position its cursor has processed (alert sensor).
    """

    name: str
    kind: str
    tick_time: datetime
    ok: bool
    last_ok: datetime | None
    first_tick: datetime
    result: str = ""
    error: str | None = None
    cursor: str | None = None
    audit_cursor: datetime | None = None

    def following(self, previous: Heartbeat | None) -> Heartbeat:
        """This tick with `first_tick` (and `last_ok` for a failed tick) carried over from the previous heartbeat."""
        if previous is None:
            return self
        last_ok = self.last_ok if self.ok else previous.last_ok
        return replace(self, first_tick=min(previous.first_tick, self.first_tick), last_ok=last_ok)

    def to_json(self) -> str:
        """Compact JSON (times as ISO-8601 UTC)."""
        data = asdict(self)
        for key in ("tick_time", "last_ok", "first_tick", "audit_cursor"):
            data[key] = iso(data[key]) if data[key] else None
        return json.dumps(data, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Heartbeat | None:
        """Read a stored heartbeat; None when unreadable."""
        try:
            data = json.loads(text)
            return cls(
                name=str(data["name"]), kind=str(data["kind"]), tick_time=to_utc(data["tick_time"], "tick_time"),
                ok=bool(data["ok"]), last_ok=_when(data.get("last_ok")),
                first_tick=to_utc(data["first_tick"], "first_tick"), result=str(data.get("result") or ""),
                error=data.get("error"), cursor=data.get("cursor"), audit_cursor=_when(data.get("audit_cursor")),
            )
        except (ValueError, KeyError, TypeError):
            return None


def truncate_cursor(cursor: str | None) -> str | None:
    """At most 200 characters of a cursor (the alert sensor's holds thousands of dedup ids)."""
    if cursor is None:
        return None
    return cursor if len(cursor) <= CURSOR_CHARS else cursor[: CURSOR_CHARS - 3] + "..."


@dataclass(frozen=True)
class Instigator:
    """A sensor or schedule as the instance runs it: whether it is RUNNING and since when (if known)."""

    name: str
    kind: str
    running: bool
    since: datetime | None = None
    cron: str | None = None


def assess(
    instigator: Instigator,
    heartbeat: Heartbeat | None,
    *,
    now: datetime,
    baseline: datetime | None,
    expected_tick: datetime | None = None,
    newest_audit_change: datetime | None = None,
) -> dict[str, Any]:
    """One row of the monitors report: last tick, age, and whether (and why) the instigator is stale.

    Args:
        instigator: the sensor or schedule and its instance status.
        heartbeat: its last heartbeat, if any.
        now: evaluation time.
        baseline: when heartbeats began on this instance (the earliest `first_tick`), None if never.
        expected_tick: for a schedule, its latest cron time more than 5 minutes before `now`.
        newest_audit_change: the newest audit record's change time (end, else start).

    Returns:
        A dict with name, kind, status, last_tick, last_ok, age_seconds, cursor fields, stale, reason, episode.
    """
    last_ok = heartbeat.last_ok if heartbeat else None
    row: dict[str, Any] = {
        "name": instigator.name,
        "kind": instigator.kind,
        "status": RUNNING if instigator.running else STOPPED,
        "last_tick": iso(heartbeat.tick_time) if heartbeat else None,
        "last_ok": iso(last_ok) if last_ok else None,
        "outcome": None if heartbeat is None else ("ok" if heartbeat.ok else f"error: {heartbeat.error or '?'}"),
        # A tick recorded while the report was being read is 0 s old, not negative.
        "age_seconds": max(0, round((now - heartbeat.tick_time).total_seconds())) if heartbeat else None,
        "result": heartbeat.result if heartbeat else None,
        "cursor": heartbeat.cursor if heartbeat else None,
        "audit_cursor": iso(heartbeat.audit_cursor) if heartbeat and heartbeat.audit_cursor else None,
        "cursor_lag_seconds": None,
        "expected_tick": iso(expected_tick) if expected_tick else None,
        "stale": False,
        "reason": None,
        "episode": None,
    }
    if not instigator.running:
        return row
    reference = max((t for t in (last_ok, instigator.since) if t is not None), default=None)
    if instigator.kind == SCHEDULE:
        started = instigator.since or baseline
        judged = expected_tick is not None and (started is not None or last_ok is not None)
        if judged and (last_ok is None or last_ok < expected_tick) and (started is None or started <= expected_tick):
            row.update(stale=True, episode=f"missed:{iso(expected_tick)}",
                       reason=f"no tick for its cron time {iso(expected_tick)} (more than 5 minutes ago)")
        return row
    reference = reference or baseline
    if reference is not None and now - reference > STALE_AFTER:
        minutes = (now - reference).total_seconds() / 60
        what = f"last successful tick {iso(last_ok)}" if last_ok else "no successful tick recorded"
        row.update(stale=True, episode=f"tick:{iso(last_ok) if last_ok else 'never'}",
                   reason=f"has not ticked for {minutes:.1f} minutes ({what})")
    if heartbeat is not None and heartbeat.audit_cursor is not None and newest_audit_change is not None:
        lag = newest_audit_change - heartbeat.audit_cursor
        row["cursor_lag_seconds"] = max(0, round(lag.total_seconds()))
        if lag > CURSOR_LAG_LIMIT:
            text = (f"cursor {iso(heartbeat.audit_cursor)} lags the audit trail (newest change "
                    f"{iso(newest_audit_change)}) by {lag.total_seconds() / 60:.1f} minutes")
            row["reason"] = f"{row['reason']}; {text}" if row["stale"] else text
            if not row["stale"]:
                row.update(stale=True, episode=f"lag:{iso(heartbeat.audit_cursor)}")
    return row


def stale_alert(row: dict[str, Any], now: datetime) -> Alert:
    """The P1 MONITOR_STALE alert for a stale row, deduplicated per instigator and stale episode."""
    details = {key: row[key] for key in (
        "kind", "status", "last_tick", "last_ok", "age_seconds", "audit_cursor", "cursor_lag_seconds",
        "expected_tick", "reason",
    )}
    return Alert(MONITOR_STALE, "P1", row["name"], details, raised_at=now, key=f"{row['name']}|{row['episode']}")


def _age(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds}s"
    return f"{seconds / 60:.0f}min" if seconds < 7200 else f"{seconds / 3600:.1f}h"


def render_rows(rows: list[dict[str, Any]]) -> list[str]:
    """Text lines of the monitors table (`!` marks a stale instigator)."""
    lines = [f"   {'name':<34}{'kind':<10}{'status':<9}{'last tick':<26}{'age':>7}  state"]
    for row in rows:
        if row["stale"]:
            state = f"! STALE: {row['reason']}"
        elif row["status"] == STOPPED:
            state = "stopped (not watched)"
        elif row["last_tick"] is None:
            state = "no tick yet"
        else:
            state = "ok" if row["outcome"] == "ok" else str(row["outcome"])
        lag = row["cursor_lag_seconds"]
        if lag is not None and not row["stale"]:
            state += f" (cursor lag {_age(lag)})"
        lines.append(
            f"   {row['name']:<34}{row['kind']:<10}{row['status']:<9}{row['last_tick'] or '-':<26}"
            f"{_age(row['age_seconds']):>7}  {state}"
        )
    return lines
