"""The runbook's morning checklist, item by item (docs/checklist.md); one implementation for all doors.

`evaluate(at, ...)` judges every item due at `at` (a 09:00 UTC morning, or any
instant): the daily list always, the Monday list on Mondays, the first-Monday list on
the first Monday of a month. Each item evaluates the period its name says relative to
`at` and belongs to the partition of that period (the previous day, week or month), so
its result is stored against that partition: a WARN on October stays on October's
partition whatever is evaluated later. `opx-learning checklist`, the Dagster checks
(one per item, on the asset it describes), the `morning_checklist_job` and its 09:00
schedule all judge with this module.

This module is the rules only: it imports neither Dagster nor any layer above `core/`.
What the rules read comes from a `Readings` (`opx_learning.defs.checklist.Context`
reads the Dagster instance, the audit trail and the stores): audit records are read
as plain values (their status, operation and trigger are string enums compared with
the audit trail's stored names below), partitions and their windows come from the
reader, and metadata to render as Markdown is marked `Markdown`.

Sources: the audit trail says what ran, when, how and how long ("the SCHEDULED daily
pattern extraction SUCCESS in < 2 min" is an audit record); the Dagster instance's
materializations say what is stored (and carry counts, drift and recommendations).
Items about a partition (the scheduled runs, coverage, calibration, the month's DRIFT
alarms) read everything recorded about it so far; items about a span of time (24 h or
7 days before `at`, the 4 weeks before) read the audit records started in that span.

| list | item | period | PASS when | else |
|---|---|---|---|---|
| daily | operations_succeeded_last_24h | 24 h before `at` | every learning operation SUCCESS | FAIL on a FAILED one; WARN on SKIPPED, RUNNING or none |
| daily | error_rate_under_10_percent_last_24h | 24 h before `at` | FAILED / (SUCCESS + FAILED) < 10 % per operation | WARN 10-20 %, FAIL > 20 % |
| daily | scheduled_daily_pattern_extraction | previous day | its SCHEDULED attempt SUCCESS in < 2 min, partition stored | see "scheduled items" |
| daily | scheduled_daily_snapshot | previous day | SCHEDULED SUCCESS in < 1 min, window not empty | see "scheduled items" |
| daily | no_failure_or_timeout_alerts | 24 h before `at` | no failure or TIMEOUT alarm (the alert rules) | FAIL, at the alarm's severity |
| daily | stored_data_integrity | 35 days before `at` | the integrity sweep finds nothing | FAIL (P0 DATA_CORRUPTION) |
| daily | late_outcomes_pending | now | no computed partition waits more than a day for late outcomes (a stored day whose new version it does not reflect) | WARN, listing them |
| daily | monitors_ticking | 5 minutes before `at` | every RUNNING sensor ticked in the last 5 minutes, no schedule missed its cron time, the alert sensor's cursor within 10 minutes of the audit trail | FAIL (P1 MONITOR_STALE); WARN when nothing has ticked (no daemon) |
| monday | scheduled_weekly_pattern_extraction | previous week | SCHEDULED SUCCESS in < 5 min | see "scheduled items" |
| monday | weekly_patterns_cover_every_service | previous week | every service with outcomes has a summary | FAIL |
| monday | scheduled_weekly_snapshot | previous week | SCHEDULED SUCCESS in < 2 min | see "scheduled items" |
| monday | weekly_success_rate_over_90_percent | 7 days before `at` | SUCCESS / attempts > 90 % | WARN |
| monday | weekly_duration_trend_stable | 7 days before `at` | p50 per-partition duration <= 1.5x the 4 weeks before | WARN |
| monday | weekly_error_rate_under_10_percent | 7 days before `at` (+ 4 weeks shown) | FAILED / (SUCCESS + FAILED) < 10 % | WARN |
| first_monday | scheduled_monthly_calibration | previous month | SCHEDULED SUCCESS in < 10 min | see "scheduled items" (FAIL is P0) |
| first_monday | calibration_has_at_least_30_outcomes | previous month | calibrated with >= 30 outcomes | FAIL (P0) |
| first_monday | calibration_drift_within_0_15 | previous month | max |drift| < 0.15 | WARN (P3, advisory) with the recommendations |
| first_monday | scheduled_monthly_snapshot | previous month | SCHEDULED SUCCESS in < 5 min | see "scheduled items" |
| first_monday | monthly_drift_alerts | previous month | no DRIFT alarm for the month's calibrations | WARN (P3, advisory) |

Scheduled items: the newest SCHEDULED attempt for exactly that partition decides.
SUCCESS within the runbook's duration and stored -> PASS; slower, SKIPPED (kill switch,
maintenance), still RUNNING, or stored only by a MANUAL / BACKFILL run -> WARN;
FAILED and not stored since, or no attempt and nothing stored -> FAIL.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import polars as pl

from opx_learning.core.schema import (
    ALL_SERVICES,
    CALIBRATION_MIN_OUTCOMES,
    DRIFT_CRITICAL,
    ERROR_RATE_ELEVATED,
    ERROR_RATE_HIGH,
)
from opx_learning.core.windows import Window, iso, to_utc

PASS, WARN, FAIL = "PASS", "WARN", "FAIL"
DAILY, MONDAY, FIRST_MONDAY = "daily", "monday", "first_monday"
LIST_TITLES = {DAILY: "every day", MONDAY: "Mondays", FIRST_MONDAY: "first Monday of the month"}
CHECKLIST_HOUR = 9
DAY = timedelta(days=1)
WEEK = timedelta(days=7)
TREND_WEEKS = 4
TREND_LIMIT = 1.5
SUCCESS_RATE_MIN = 0.90
ERROR_RATE_WARN = ERROR_RATE_ELEVATED
ERROR_RATE_FAIL = ERROR_RATE_HIGH
INTEGRITY_DAYS = 35

# Expected durations from the runbook, in milliseconds (the scheduled items' limits).
EXPECTED_MS = {
    "pattern_summaries_daily": 2 * 60_000,
    "pattern_summaries_weekly": 5 * 60_000,
    "confidence_calibration": 10 * 60_000,
    "learning_snapshots_daily": 60_000,
    "learning_snapshots_weekly": 2 * 60_000,
    "learning_snapshots_monthly": 5 * 60_000,
}

# The audit trail's names (`opx_learning.safety.models`), as every audit record stores them.
RUNNING, SUCCESS, FAILED, SKIPPED = "RUNNING", "SUCCESS", "FAILED", "SKIPPED"
AUDIT_STATUSES = (RUNNING, SUCCESS, FAILED, SKIPPED)
SCHEDULED = "SCHEDULED"
PATTERN_EXTRACTION, CALIBRATION, SNAPSHOT = "PATTERN_EXTRACTION", "CALIBRATION", "SNAPSHOT"
LEARNING_OPERATIONS = (PATTERN_EXTRACTION, CALIBRATION, SNAPSHOT)

# The alerts' names (`opx_learning.alerts.models`), as every alert carries them.
SEVERITIES = ("P0", "P1", "P2", "P3", "INFO")
DIGEST_ALARM = "MORNING_CHECKLIST"
DIGEST_OPERATION = "CHECKLIST"
FAILURE_ALARMS = {"CALIBRATION_FAILURE", "CONSECUTIVE_FAILURES", "REPEATED_FAILURE", "OPERATION_FAILURE", "TIMEOUT"}


class Markdown(str):
    """A metadata value to show as Markdown (the Dagster checks record it as `MetadataValue.md`)."""


class Readings(Protocol):
    """What the items read at `at`: the audit trail, the partitions, what is stored, the alert rules, the monitors.

    `opx_learning.defs.checklist.Context` supplies it from the Dagster instance and the stores.
    """

    at: datetime

    def records(self, since: datetime, until: datetime | None = None) -> list[Any]:
        """Learning-operation audit records started in `[since, until or at)`."""
        ...

    def attempts(self, operation: str, since: datetime) -> list[Any]:
        """Audit records of `operation` started at or after `since`, newest first."""
        ...

    def period_key(self, cadence: str) -> str | None:
        """The last partition of `cadence` (DAILY, WEEKLY, MONTHLY) complete at `at`, or None."""
        ...

    def window(self, cadence: str, key: str) -> Window:
        """The window of partition `key` of `cadence`."""
        ...

    def latest(self, asset: str, partition: str) -> dict[str, Any] | None:
        """Metadata values of the latest materialization of `asset` for `partition`, or None."""
        ...

    def stored(self, asset: str, partition: str) -> Any:
        """The stored value of `asset` for `partition` (None if not stored)."""
        ...

    def outcomes(self, window: Window) -> pl.DataFrame:
        """The valid outcomes of `window`."""
        ...

    def alarms(self, records: list[Any], history: list[Any]) -> list[Any]:
        """The alerts the alert rules raise for `records` (with `history` before them) at `at`."""
        ...

    def drift_alarm(self, record: Any) -> Any:
        """The DRIFT alert of a calibration's audit record, or None."""
        ...

    def integrity_report(self, days: int) -> Any:
        """The integrity sweep's report over the `days` before `at` (`findings`, `checked`, `clean`, `summary()`)."""
        ...

    def monitors(self) -> tuple[str, str, dict[str, Any]]:
        """PASS (all ticking), WARN (none has ever ticked: no daemon) or FAIL (one is stale), the figure, metadata."""
        ...

    def late_pending(self) -> list[dict[str, Any]]:
        """Computed partitions late outcomes left pending: `asset`, `partition`, `since` (ISO or None), `reason`."""
        ...


@dataclass(frozen=True)
class Judgement:
    """What one item found: status, the figure behind it, metadata, and the severity of a FAIL alarm if it names one."""

    status: str
    figure: str
    metadata: dict[str, Any] = field(default_factory=dict)
    fail_severity: str | None = None


@dataclass(frozen=True)
class Item:
    """One checklist item: its check name, the asset it is attached to, its list and cadence, how it is judged.

    `cadence` (DAILY / WEEKLY / MONTHLY) is the partitioning of the period it evaluates;
    None for the integrity sweep, which is not partitioned.
    """

    name: str
    asset: str
    checklist: str
    cadence: str | None
    description: str
    judge: Callable[[Readings, str | None], Judgement]
    fail_severity: str = "P1"
    warn_severity: str = "P2"
    can_fail: bool = True


@dataclass(frozen=True)
class ItemResult:
    """One evaluated item, as printed, stored as a check evaluation and summarised in the digest."""

    name: str
    asset: str
    checklist: str
    period: str
    partition: str | None
    status: str
    figure: str
    severity: str | None
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (`check` and `description` repeat `name` and `figure` for older readers)."""
        return {
            "item": self.name,
            "check": self.name,
            "asset": self.asset,
            "list": self.checklist,
            "period": self.period,
            "partition": self.partition,
            "status": self.status,
            "figure": self.figure,
            "description": self.figure,
            "severity": self.severity,
        }


def due_lists(at: datetime) -> list[str]:
    """The lists due at `at`: daily always, Monday on Mondays, first-Monday on a month's first Monday (UTC)."""
    lists = [DAILY]
    if at.weekday() == 0:
        lists.append(MONDAY)
        if at.day <= 7:
            lists.append(FIRST_MONDAY)
    return lists


def checklist_time(cadence: str, period: Window) -> datetime:
    """The morning that reviews a partition of `cadence` whose window is `period`.

    The next 09:00 (day), Monday 09:00 (week), first Monday 09:00 (month).
    """
    morning = period.end + timedelta(hours=CHECKLIST_HOUR)
    if cadence == "DAILY":
        return morning
    return morning + timedelta(days=(7 - morning.weekday()) % 7)


def period_label(cadence: str, key: str, period: Window) -> str:
    """A partition (`key`, window `period`) as people name it: `2026-03-01`, `2026-03-01..2026-03-07`, `2026-03`."""
    if cadence == "DAILY":
        return key
    if cadence == "WEEKLY":
        return f"{period.start.date()}..{(period.end - DAY).date()}"
    return key[:7]


def _minutes(ms: float) -> str:
    return f"{ms / 1000:.1f} s" if ms < 60_000 else f"{ms / 60_000:.1f} min"


def _limit_text(ms: int) -> str:
    minutes = ms // 60_000
    return f"{minutes} minute" + ("s" if minutes != 1 else "")


def _covers(record: Any, window: Window, cadence: str, snapshot: bool) -> bool:
    parameters = record.parameters
    if parameters.get("time_window") != cadence or (snapshot and parameters.get("snapshot_type") != cadence):
        return False
    try:
        return to_utc(parameters["start_date"]) <= window.start and to_utc(parameters["end_date"]) >= window.end
    except (KeyError, ValueError, TypeError):
        return False


def _scheduled(asset: str, operation: str, cadence: str) -> Callable[[Readings, str | None], Judgement]:
    limit = EXPECTED_MS[asset]
    snapshot = operation == SNAPSHOT

    def judge(context: Readings, key: str | None) -> Judgement:
        assert key is not None
        window = context.window(cadence, key)
        # A scheduled attempt covers exactly its partition and starts once the partition has ended.
        scheduled = [
            r
            for r in context.attempts(operation, window.start)
            if r.trigger_type == SCHEDULED and _covers(r, window, cadence, snapshot)
        ]
        stored = context.latest(asset, key)
        meta: dict[str, Any] = {"limit_ms": limit, "materialized": stored is not None}
        by_other = ""
        if stored is not None and stored.get("audit_id"):
            meta["materialized_by"] = str(stored["audit_id"])
            by_other = f"{stored.get('trigger_type', 'a')} run (audit {stored['audit_id']})"
        if not scheduled:
            if stored is None:
                return Judgement(FAIL, f"no SCHEDULED {operation} attempt and {key} is not materialized", meta)
            return Judgement(WARN, f"no SCHEDULED attempt; {key} was materialized by a {by_other or 'run'}", meta)
        last = scheduled[0]
        meta |= {"audit_id": last.audit_id, "status": str(last.status), "duration_ms": last.duration_ms or 0}
        if last.status == SUCCESS:
            took = last.duration_ms or 0
            text = f"SCHEDULED SUCCESS in {_minutes(took)} (runbook: < {_limit_text(limit)}), audit {last.audit_id}"
            if stored is None:
                return Judgement(WARN, f"{text}, but {key} is not materialized in this Dagster instance", meta)
            if took >= limit:
                return Judgement(WARN, f"SCHEDULED SUCCESS but took {_minutes(took)} (runbook: < {_limit_text(limit)})", meta)
            if snapshot and bool(stored.get("empty", int(stored.get("outcomes", 1)) == 0)):
                return Judgement(WARN, f"{text}; the window holds no outcomes (empty snapshot)", meta)
            return Judgement(PASS, text, meta)
        if last.status == FAILED:
            reason = last.results.get("failure_reason") or (last.error_message or "").splitlines()[0][:120]
            text = f"SCHEDULED attempt FAILED ({reason}), audit {last.audit_id}"
            later = stored is not None and stored["materialized_at"] > (last.end_time or last.start_time).timestamp()
            return Judgement(WARN, f"{text}; materialized since by a {by_other}", meta) if later else Judgement(FAIL, text, meta)
        if last.status == SKIPPED:
            return Judgement(WARN, f"SCHEDULED attempt SKIPPED ({last.skip_reason}), audit {last.audit_id}", meta)
        running = (datetime.now(UTC) - last.start_time).total_seconds() * 1000
        return Judgement(WARN, f"SCHEDULED attempt still RUNNING after {_minutes(running)}, audit {last.audit_id}", meta)

    return judge


def _operations_succeeded(context: Readings, key: str | None) -> Judgement:
    records = context.records(context.at - DAY)
    counts = {status: sum(r.status == status for r in records) for status in AUDIT_STATUSES}
    figure = ", ".join(f"{count} {status}" for status, count in counts.items())
    meta = {status.lower(): count for status, count in counts.items()}
    failed = [r for r in records if r.status == FAILED]
    if failed:
        names = ", ".join(f"{r.operation_type} {r.audit_id}" for r in failed[:5])
        return Judgement(FAIL, f"{figure}; FAILED: {names}", meta)
    if not records:
        return Judgement(WARN, "no learning operation started in the last 24 h", meta)
    if counts["SKIPPED"] or counts["RUNNING"]:
        return Judgement(WARN, figure, meta)
    return Judgement(PASS, figure, meta)


def _error_rates(records: Iterable[Any]) -> dict[str, tuple[int, int]]:
    rates = {}
    for operation in LEARNING_OPERATIONS:
        mine = [r for r in records if r.operation_type == operation and r.status in (SUCCESS, FAILED)]
        if mine:
            rates[operation] = (sum(r.status == FAILED for r in mine), len(mine))
    return rates


def _error_rate(records: list[Any], span: str, fail_over: float | None) -> Judgement:
    rates = _error_rates(records)
    if not rates:
        return Judgement(PASS, f"no SUCCESS or FAILED operation in the {span}")
    parts, meta, worst = [], {}, 0.0
    for operation, (failed, completed) in rates.items():
        rate = failed / completed
        worst = max(worst, rate)
        meta[f"{operation.lower()}_error_rate"] = round(rate, 4)
        parts.append(f"{operation} {failed}/{completed} failed ({rate:.1%})")
    figure = "; ".join(parts)
    if fail_over is not None and worst > fail_over:
        return Judgement(FAIL, f"{figure} -- over {fail_over:.0%}", meta)
    if worst >= ERROR_RATE_WARN:
        return Judgement(WARN, f"{figure} -- at or over 10 %", meta)
    return Judgement(PASS, f"{figure}, all under 10 %", meta)


def _error_rate_24h(context: Readings, key: str | None) -> Judgement:
    return _error_rate(context.records(context.at - DAY), "last 24 h", ERROR_RATE_FAIL)


def _no_failure_alerts(context: Readings, key: str | None) -> Judgement:
    since = context.at - DAY
    alerts = [
        a
        for a in context.alarms(context.records(since), context.records(context.at - WEEK))
        if a.alarm in FAILURE_ALARMS
    ]
    if not alerts:
        return Judgement(PASS, "no failure or TIMEOUT alarm since the previous checklist (24 h)", {"alerts": 0})
    worst = min((a.severity for a in alerts), key=SEVERITIES.index)
    listed = ", ".join(f"{a.severity} {a.alarm} {a.operation} ({a.audit_id})" for a in alerts[:5])
    more = f" and {len(alerts) - 5} more" if len(alerts) > 5 else ""
    return Judgement(FAIL, f"{len(alerts)} alarm(s): {listed}{more}", {"alerts": len(alerts)}, fail_severity=worst)


def _integrity(context: Readings, key: str | None) -> Judgement:
    report = context.integrity_report(INTEGRITY_DAYS)
    meta = {"findings": len(report.findings), **{f"checked_{name}": n for name, n in report.checked.items()}}
    if report.clean:
        return Judgement(PASS, report.summary(), meta)
    listed = "\n".join(f"- {finding}" for finding in report.findings[:20])
    more = f"\n- ... and {len(report.findings) - 20} more" if len(report.findings) > 20 else ""
    return Judgement(FAIL, f"DATA_CORRUPTION: {report.summary()}\n{listed}{more}", meta)


def _monitors(context: Readings, key: str | None) -> Judgement:
    status, figure, meta = context.monitors()
    return Judgement(status, figure, meta, fail_severity="P1" if status == FAIL else None)


def _late_outcomes(context: Readings, key: str | None) -> Judgement:
    pending = context.late_pending()
    limit = context.at - DAY
    old = [p for p in pending if p["since"] is None or datetime.fromisoformat(p["since"]) < limit]
    meta: dict[str, Any] = {"pending": len(pending), "pending_over_a_day": len(old)}
    if pending:
        rows = [f"| {p['asset']} | {p['partition']} | {p['since'] or '-'} | {p['reason']} |" for p in pending[:50]]
        meta["partitions"] = Markdown("\n".join(["| asset | partition | since | reason |", "|---|---|---|---|", *rows]))
    if old:
        shown = ", ".join(f"{p['asset']} {p['partition']}" for p in old[:10])
        more = f" and {len(old) - 10} more" if len(old) > 10 else ""
        return Judgement(WARN, f"{len(old)} partition(s) wait more than a day for late outcomes: {shown}{more} "
                         "(start late_outcomes_automation, or refresh them with `opx-learning trigger`)", meta)
    if pending:
        return Judgement(PASS, f"{len(pending)} partition(s) refreshing for late outcomes received in the last day", meta)
    return Judgement(PASS, "every computed partition reflects the stored outcomes", meta)


def _weekly_services(context: Readings, key: str | None) -> Judgement:
    assert key is not None
    summary = context.stored("pattern_summaries_weekly", key)
    if not isinstance(summary, pl.DataFrame):
        return Judgement(FAIL, f"week {key} is not materialized")
    outcomes = context.outcomes(context.window("WEEKLY", key))
    expected = set(outcomes["service"].unique().to_list())
    missing = sorted(expected - (set(summary["service"].to_list()) - {ALL_SERVICES}))
    meta = {"services": len(expected), "missing": ", ".join(missing) or "-"}
    if missing:
        return Judgement(FAIL, f"missing: {', '.join(missing)}", meta)
    return Judgement(PASS, f"all {len(expected)} services covered", meta)


def _success_rate(context: Readings, key: str | None) -> Judgement:
    records = [r for r in context.records(context.at - WEEK) if r.status != RUNNING]
    if not records:
        return Judgement(WARN, "no completed learning operation in the last 7 days")
    succeeded = sum(r.status == SUCCESS for r in records)
    rate = succeeded / len(records)
    figure = f"{succeeded}/{len(records)} attempts SUCCESS ({rate:.1%}; FAILED and SKIPPED count against it)"
    return Judgement(PASS if rate > SUCCESS_RATE_MIN else WARN, figure, {"success_rate": round(rate, 4)})


def _per_partition_ms(record: Any) -> float:
    partitions = record.results.get("partitions")
    count = partitions if isinstance(partitions, int) and partitions > 0 else 1
    return (record.duration_ms or 0) / count


def _duration_trend(context: Readings, key: str | None) -> Judgement:
    week_start = context.at - WEEK
    recent = [r for r in context.records(week_start) if r.status == SUCCESS]
    earlier = [r for r in context.records(week_start - WEEK * TREND_WEEKS, week_start) if r.status == SUCCESS]

    def groups(records: list[Any]) -> dict[str, list[float]]:
        found: dict[str, list[float]] = {}
        for r in records:
            found.setdefault(f"{r.operation_type} {r.parameters.get('time_window', '-')}", []).append(_per_partition_ms(r))
        return found

    now, before = groups(recent), groups(earlier)
    compared, slower, meta = [], [], {}
    for name in sorted(now):
        if name not in before:
            continue
        p50, base = statistics.median(now[name]), statistics.median(before[name])
        ratio = p50 / base if base else 1.0
        meta[name.lower().replace(" ", "_") + "_p50_ratio"] = round(ratio, 3)
        compared.append(f"{name} p50 {_minutes(p50)} vs {_minutes(base)} ({ratio:.2f}x)")
        if ratio > TREND_LIMIT:
            slower.append(name)
    if not compared:
        return Judgement(PASS, "no operation ran both this week and in the 4 weeks before: nothing to compare", meta)
    figure = "; ".join(compared)
    if slower:
        return Judgement(WARN, f"{figure} -- {', '.join(slower)} over {TREND_LIMIT}x", meta)
    return Judgement(PASS, f"{figure}, all within {TREND_LIMIT}x", meta)


def _weekly_error_rate(context: Readings, key: str | None) -> Judgement:
    result = _error_rate(context.records(context.at - WEEK), "last 7 days", None)
    trend = []
    for weeks_back in range(TREND_WEEKS, 0, -1):
        end = context.at - WEEK * weeks_back
        rates = _error_rates(context.records(end - WEEK, end))
        failed, completed = sum(f for f, _ in rates.values()), sum(c for _, c in rates.values())
        trend.append(f"{failed / completed:.0%}" if completed else "-")
    return Judgement(result.status, f"{result.figure} (previous 4 weeks: {', '.join(trend)})", result.metadata)


def _calibration_count(context: Readings, key: str | None) -> Judgement:
    assert key is not None
    stored = context.latest("confidence_calibration", key)
    if stored is not None:
        count = int(stored.get("outcome_count", 0))
        passed = count >= CALIBRATION_MIN_OUTCOMES
        return Judgement(PASS if passed else FAIL, f"{count} outcomes (>= 30 required)", {"outcome_count": count})
    outcomes = context.outcomes(context.window("MONTHLY", key))
    count = int(outcomes["predicted_confidence"].is_not_null().sum())
    if count < CALIBRATION_MIN_OUTCOMES:
        text = f"INSUFFICIENT_DATA: {count} outcomes with a confidence in {key[:7]} (< 30); calibration fails"
    else:
        text = f"{count} outcomes available but {key[:7]} is not calibrated"
    return Judgement(FAIL, text, {"outcome_count": count})


def _drift(context: Readings, key: str | None) -> Judgement:
    assert key is not None
    stored = context.latest("confidence_calibration", key)
    if stored is None:
        return Judgement(WARN, f"{key[:7]} is not calibrated: no drift to judge")
    drift, signed = float(stored.get("max_abs_drift", 0.0)), float(stored.get("drift", 0.0))
    meta = {"max_abs_drift": drift, "drift": signed}
    text = f"max |drift| {drift:.3f} (signed {signed:+.3f})"
    if drift < DRIFT_CRITICAL:
        return Judgement(PASS, f"{text} within 0.15", meta)
    lines = [line.removeprefix("- ") for line in str(stored.get("recommendations", "")).splitlines()]
    advice = [line for line in lines if line and not line.endswith("(INFO)")]
    meta["recommendations"] = Markdown("\n".join(f"- {line}" for line in advice) or "-")
    return Judgement(WARN, f"{text} exceeds 0.15 (advisory, nothing changes): {'; '.join(advice)}", meta)


def _drift_alerts(context: Readings, key: str | None) -> Judgement:
    assert key is not None
    window = context.window("MONTHLY", key)
    records = context.attempts(CALIBRATION, window.start)
    alerts = [a for r in records if _covers(r, window, "MONTHLY", False) and (a := context.drift_alarm(r)) is not None]
    if not alerts:
        return Judgement(PASS, f"no DRIFT alarm for {key[:7]}'s calibrations", {"drift_alerts": 0})
    bands = ", ".join(
        f"{b['band']} {float(b['drift']):+.3f}" for b in alerts[0].details.get("bands", []) if b.get("drift") is not None
    )
    return Judgement(
        WARN,
        f"{len(alerts)} DRIFT alarm(s) (advisory) for {key[:7]}, newest audit {alerts[0].audit_id}: {bands}",
        {"drift_alerts": len(alerts)},
    )


ITEMS: tuple[Item, ...] = (
    Item("operations_succeeded_last_24h", "audit_trail_daily", DAILY, "DAILY",
         "Every learning operation of the 24 h before the checklist ended SUCCESS.", _operations_succeeded),
    Item("error_rate_under_10_percent_last_24h", "audit_trail_daily", DAILY, "DAILY",
         "FAILED / (SUCCESS + FAILED) per operation over the 24 h before the checklist < 10 % (FAIL > 20 %).",
         _error_rate_24h),
    Item("scheduled_daily_pattern_extraction", "pattern_summaries_daily", DAILY, "DAILY",
         "The previous day's SCHEDULED pattern extraction ended SUCCESS in < 2 minutes.",
         _scheduled("pattern_summaries_daily", PATTERN_EXTRACTION, "DAILY")),
    Item("scheduled_daily_snapshot", "learning_snapshots_daily", DAILY, "DAILY",
         "The previous day's SCHEDULED snapshot ended SUCCESS in < 1 minute.",
         _scheduled("learning_snapshots_daily", SNAPSHOT, "DAILY")),
    Item("no_failure_or_timeout_alerts", "audit_trail_daily", DAILY, "DAILY",
         "No failure or TIMEOUT alarm (the alert rules) since the previous checklist.", _no_failure_alerts),
    Item("stored_data_integrity", "stored_data", DAILY, None,
         f"Snapshots, partitions and audit records of the last {INTEGRITY_DAYS} days re-read intact.", _integrity,
         fail_severity="P0"),
    Item("late_outcomes_pending", "daily_outcomes", DAILY, None,
         "No computed partition waits more than a day for outcomes that arrived after it was computed.",
         _late_outcomes, can_fail=False),
    Item("monitors_ticking", "sensor_heartbeats", DAILY, None,
         "Every RUNNING sensor ticked in the last 5 minutes, no schedule missed its cron time, and the alert "
         "sensor's cursor is within 10 minutes of the audit trail.", _monitors, fail_severity="P1"),
    Item("scheduled_weekly_pattern_extraction", "pattern_summaries_weekly", MONDAY, "WEEKLY",
         "The previous week's SCHEDULED pattern extraction ended SUCCESS in < 5 minutes.",
         _scheduled("pattern_summaries_weekly", PATTERN_EXTRACTION, "WEEKLY")),
    Item("weekly_patterns_cover_every_service", "pattern_summaries_weekly", MONDAY, "WEEKLY",
         "Every service with outcomes in the week has a weekly pattern summary.", _weekly_services),
    Item("scheduled_weekly_snapshot", "learning_snapshots_weekly", MONDAY, "WEEKLY",
         "The previous week's SCHEDULED snapshot ended SUCCESS in < 2 minutes.",
         _scheduled("learning_snapshots_weekly", SNAPSHOT, "WEEKLY")),
    Item("weekly_success_rate_over_90_percent", "audit_trail_weekly", MONDAY, "WEEKLY",
         "SUCCESS / attempts of the learning operations of the 7 days before the checklist > 90 %.", _success_rate,
         can_fail=False),
    Item("weekly_duration_trend_stable", "audit_trail_weekly", MONDAY, "WEEKLY",
         "This week's p50 duration per partition within 1.5x the 4 weeks before, per operation and cadence.",
         _duration_trend, can_fail=False),
    Item("weekly_error_rate_under_10_percent", "audit_trail_weekly", MONDAY, "WEEKLY",
         "FAILED / (SUCCESS + FAILED) per operation over the 7 days before the checklist < 10 %.",
         _weekly_error_rate, can_fail=False),
    Item("scheduled_monthly_calibration", "confidence_calibration", FIRST_MONDAY, "MONTHLY",
         "The previous month's SCHEDULED calibration ended SUCCESS in < 10 minutes (critical).",
         _scheduled("confidence_calibration", CALIBRATION, "MONTHLY"), fail_severity="P0"),
    Item("calibration_has_at_least_30_outcomes", "confidence_calibration", FIRST_MONDAY, "MONTHLY",
         "The previous month is calibrated on at least 30 outcomes with a confidence.", _calibration_count,
         fail_severity="P0"),
    Item("calibration_drift_within_0_15", "confidence_calibration", FIRST_MONDAY, "MONTHLY",
         "Max |drift| of sufficient bands < 0.15 (advisory WARN with the band recommendations).", _drift,
         warn_severity="P3", can_fail=False),
    Item("scheduled_monthly_snapshot", "learning_snapshots_monthly", FIRST_MONDAY, "MONTHLY",
         "The previous month's SCHEDULED snapshot ended SUCCESS in < 5 minutes.",
         _scheduled("learning_snapshots_monthly", SNAPSHOT, "MONTHLY")),
    Item("monthly_drift_alerts", "confidence_calibration", FIRST_MONDAY, "MONTHLY",
         "DRIFT alarms raised for the previous month's calibrations (advisory).", _drift_alerts,
         warn_severity="P3", can_fail=False),
)
ITEMS_BY_NAME = {item.name: item for item in ITEMS}


def evaluate_item(item: Item, context: Readings, key: str | None = None) -> ItemResult:
    """Judge one item at `context.at` for partition `key` (default: the period it names relative to `at`)."""
    if item.cadence is not None and key is None:
        key = context.period_key(item.cadence)
    if item.cadence is not None and key is None:
        return ItemResult(item.name, item.asset, item.checklist, "-", None, WARN,
                          f"no complete {item.cadence.lower()} partition before {iso(context.at)}", item.warn_severity)
    if item.name == "monitors_ticking":
        period = f"5 minutes before {iso(context.at)}"
    elif item.cadence is None:
        period = f"{INTEGRITY_DAYS} days before {iso(context.at)}"
    elif item.asset.startswith("audit_trail_"):
        span = "24 h" if item.cadence == "DAILY" else "7 days"
        label = period_label(item.cadence, key, context.window(item.cadence, key))
        period = f"{span} before {iso(context.at)} ({label})"
    else:
        period = period_label(item.cadence, key, context.window(item.cadence, key))
    judgement = item.judge(context, key)
    status = judgement.status if item.can_fail or judgement.status != FAIL else WARN
    severity = None
    if status == FAIL:
        severity = judgement.fail_severity or item.fail_severity
    elif status == WARN:
        severity = item.warn_severity
    return ItemResult(item.name, item.asset, item.checklist, period, key, status, judgement.figure, severity,
                      judgement.metadata)


def evaluate(context: Readings, lists: Iterable[str] | None = None) -> list[ItemResult]:
    """Every item of the lists due at `context.at` (or of `lists`), in the runbook's order."""
    wanted = set(lists) if lists is not None else set(due_lists(context.at))
    return [evaluate_item(item, context) for item in ITEMS if item.checklist in wanted]


def worst_severity(results: Iterable[ItemResult]) -> str:
    """The digest's severity: the most severe item's, P3 (a heartbeat) when every item passes."""
    severities = [r.severity for r in results if r.severity is not None]
    return min(severities, key=SEVERITIES.index) if severities else "P3"


def counts(results: Iterable[ItemResult]) -> dict[str, int]:
    """`{PASS: n, WARN: n, FAIL: n}`."""
    found = {PASS: 0, WARN: 0, FAIL: 0}
    for result in results:
        found[result.status] += 1
    return found


@dataclass(frozen=True)
class Digest:
    """The one alert a checklist sends, as plain values (`opx_learning.defs.checklist.digest_alert` makes it an `Alert`)."""

    alarm: str
    severity: str
    operation: str
    details: dict[str, Any]
    raised_at: datetime
    key: str


def digest(results: list[ItemResult], at: datetime) -> Digest:
    """The one alert a checklist sends: worst severity, every non-passing item, a stable id per checklist time."""
    tally = counts(results)
    flagged = [r for r in results if r.status != PASS]
    details = {
        "at": iso(at),
        "lists": sorted({r.checklist for r in results}, key=[DAILY, MONDAY, FIRST_MONDAY].index),
        "status": FAIL if tally[FAIL] else WARN if tally[WARN] else PASS,
        "counts": tally,
        "summary": f"{tally[FAIL]} FAIL, {tally[WARN]} WARN, {tally[PASS]} PASS",
        "items": [
            {"item": r.name, "period": r.period, "status": r.status, "severity": r.severity, "figure": r.figure}
            for r in flagged
        ],
    }
    return Digest(DIGEST_ALARM, worst_severity(results), DIGEST_OPERATION, details, raised_at=at, key=f"checklist:{iso(at)}")


def morning_of(at: datetime | None) -> datetime:
    """The evaluation time: `at` (UTC) or now."""
    return (at or datetime.now(UTC)).astimezone(UTC)
