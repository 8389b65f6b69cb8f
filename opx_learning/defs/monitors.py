"""Monitoring of the monitors: heartbeats of every tick, a watchdog sensor and a checklist check.

Heartbeats live in the Dagster instance's key-value store (`opx/heartbeat/<name>`,
one JSON value each, `opx_learning.alerts.heartbeats.Heartbeat`), so any process on
the same instance reads them: the watchdog, the checklist, `opx-learning status`.
Every sensor and schedule function carries the `heartbeat` decorator, applied before
`@dg.sensor` / `@dg.schedule` (`with_heartbeats`, in `definitions.py`, refuses a code
location with one that does not): each evaluation of a sensor, and each daemon tick of
a schedule (a dry run such as "Test schedule" launches nothing and leaves no
heartbeat), records its tick time, outcome, result and cursor; on aws it also puts the
CloudWatch metric `Heartbeat` (dimension SensorName). Recording never fails the tick.

`monitors_watchdog_sensor` (every 60 s, starts RUNNING) judges the other instigators
with the rules of `opx_learning.alerts.heartbeats` and raises one P1 `MONITOR_STALE`
per stale episode; the alert sensor judges the watchdog the same way, so each watches
the other. The instance's instigator state decides what is RUNNING: a sensor an
operator stopped is not an alarm. The episode last paged is kept per instigator
(`opx/monitor-alerted/<name>`), so neither sensor, nor the checklist check
`monitors_ticking`, pages twice for one episode, whatever the alert channel.
"""

import functools
import inspect
import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import dagster as dg

from opx_learning.alerts.heartbeats import (
    SCHEDULE,
    SENSOR,
    STALE_AFTER,
    Heartbeat,
    Instigator,
    assess,
    stale_alert,
    truncate_cursor,
)
from opx_learning.alerts.metrics import MetricsSink, metrics_sink
from opx_learning.alerts.models import Alert
from opx_learning.alerts.monitor import MAX_CATCH_UP, AlertCursor
from opx_learning.alerts.publishers import AlertPublisher
from opx_learning.backends import guard_for
from opx_learning.config import Settings
from opx_learning.core.windows import iso
from opx_learning.defs.location import Location
from opx_learning.resources.alerts import AlertsResource
from opx_learning.resources.safety import SafetyResource, is_real_tick
from opx_learning.safety.audit import AuditLog, utcnow
from opx_learning.safety.models import BackendUnavailable

HEARTBEAT_KEY_PREFIX = "opx/heartbeat/"
ALERTED_KEY_PREFIX = "opx/monitor-alerted/"
WATCHDOG = "monitors_watchdog_sensor"
ALERT_SENSOR = "operations_alert_sensor"
_RESULT_CHARS = 200
_log = logging.getLogger("opx_learning.monitors")
_Fn = TypeVar("_Fn", bound=Callable[..., Any])
# Names given to `heartbeat`: what `with_heartbeats` checks a code location against.
_HEARTBEAT_NAMES: set[str] = set()


def _alert_cursor_position(cursor: str | None) -> datetime | None:
    """The audit-trail time the alert sensor's cursor has processed (None before its first tick)."""
    return AlertCursor.parse(cursor, utcnow()).since if cursor else None


# Sensors whose cursor follows the audit trail, with how to read the position from the cursor.
AUDIT_CURSORS: dict[str, Callable[[str | None], datetime | None]] = {ALERT_SENSOR: _alert_cursor_position}


def _set(instance: dg.DagsterInstance, key: str, value: str) -> None:
    # One key per call: Dagster's multi-key upsert skips new keys when any key already exists.
    instance.run_storage.set_cursor_values({key: value})


def read_heartbeats(instance: dg.DagsterInstance, names: Iterable[str]) -> dict[str, Heartbeat]:
    """The stored heartbeats of these instigators (those that have one), by name."""
    keys = {HEARTBEAT_KEY_PREFIX + name for name in names}
    found = {}
    for key, value in instance.run_storage.get_cursor_values(keys).items():
        beat = Heartbeat.from_json(value)
        if beat is not None:
            found[key.removeprefix(HEARTBEAT_KEY_PREFIX)] = beat
    return found


def record_heartbeat(
    instance: dg.DagsterInstance,
    name: str,
    kind: str,
    *,
    at: datetime,
    ok: bool = True,
    result: str = "",
    error: str | None = None,
    cursor: str | None = None,
    metrics: MetricsSink | None = None,
) -> Heartbeat:
    """Store the heartbeat of one tick (and, for a successful tick, put the CloudWatch metric through `metrics`).

    Args:
        instance: the Dagster instance the watchdog reads.
        name: sensor or schedule name.
        kind: "sensor" or "schedule".
        at: the tick time (a schedule's cron time).
        ok: whether the evaluation completed without error.
        result: the tick's skip message or run-request count.
        error: the error of a failed evaluation.
        cursor: the sensor's cursor after the tick.
        metrics: the metrics sink (None: no metric).

    Returns:
        The stored heartbeat.
    """
    position = AUDIT_CURSORS.get(name)
    beat = Heartbeat(
        name=name, kind=kind, tick_time=at, ok=ok, last_ok=at if ok else None, first_tick=at,
        result=result[:_RESULT_CHARS], error=(error or "")[:_RESULT_CHARS] or None,
        cursor=truncate_cursor(cursor), audit_cursor=position(cursor) if position else None,
    ).following(read_heartbeats(instance, [name]).get(name))
    _set(instance, HEARTBEAT_KEY_PREFIX + name, beat.to_json())
    if ok and metrics is not None:
        metrics.heartbeat(name, at)
    return beat


def _summary(items: Iterable[Any]) -> str:
    items = list(items)
    skips = [item.skip_message or "" for item in items if isinstance(item, dg.SkipReason)]
    if skips:
        return skips[0]
    results = [item for item in items if isinstance(item, dg.SensorResult)]
    if results and results[0].skip_reason is not None:
        return results[0].skip_reason.skip_message or ""
    requests = [item for item in items if isinstance(item, dg.RunRequest)]
    if results:
        requests += list(results[0].run_requests or [])
    return f"{len(requests)} run request(s)"


def _beat(
    context: Any, name: str, kind: str, at: datetime, outcome: Any, cursor: str | None, settings: Settings | None
) -> None:
    """Record a heartbeat from inside an evaluation; any failure is logged, never raised."""
    try:
        instance = context.instance
    except Exception:  # noqa: BLE001 - an evaluation without an instance has nowhere to record
        return
    try:
        failed = isinstance(outcome, BaseException)
        record_heartbeat(
            instance, name, kind, at=at, ok=not failed,
            result="" if failed else _summary(outcome),
            error=f"{type(outcome).__name__}: {outcome}" if failed else None,
            cursor=cursor, metrics=metrics_sink(settings) if settings is not None else None,
        )
    except Exception as exc:  # noqa: BLE001 - a heartbeat must never fail the tick
        _log.warning("heartbeat of %s %s not recorded: %s: %s", kind, name, type(exc).__name__, exc)


def _outcome_items(result: Any) -> list[Any]:
    """The items of an evaluation function's result (one value, a list, or None), as Dagster reads them."""
    if result is None:
        return []
    return list(result) if isinstance(result, list) else [result]


def _drain(generator: Any) -> list[Any]:
    """Every item a generator yields, then the value it returns (if any), as Dagster collects them."""
    items = []
    try:
        while True:
            items.append(next(generator))
    except StopIteration as stop:
        if stop.value is not None:
            items.append(stop.value)
    return items


def heartbeat(name: str, settings: Settings | None = None) -> Callable[[_Fn], _Fn]:
    """Decorator for a sensor or schedule function, applied before `@dg.sensor` / `@dg.schedule`: every tick leaves a heartbeat.

    Each evaluation of a sensor, and each daemon tick of a schedule (`is_real_tick`; a dry
    run records nothing), records the tick time (a schedule's cron time), whether it
    raised, its result (skip message or run-request count) and, for a sensor, its cursor
    after the tick. The function is called exactly as Dagster calls it (its signature,
    resource parameters included, is kept) and its result is returned unchanged (a
    generator's items as a list); recording never fails the tick.

        @dg.sensor(name="my_sensor", ...)
        @heartbeat("my_sensor")
        def my_sensor(context: dg.SensorEvaluationContext, safety: SafetyResource): ...

    Args:
        name: the sensor's or schedule's name (its `name=`), under which the heartbeat is stored.
        settings: the location's settings, whose backend receives the heartbeat metric (None: no metric).
    """

    def decorate(fn: _Fn) -> _Fn:
        generator = inspect.isgeneratorfunction(fn)

        @functools.wraps(fn)
        def evaluate(*args: Any, **kwargs: Any) -> Any:
            context = next(
                (value for value in (*args, *kwargs.values())
                 if isinstance(value, (dg.SensorEvaluationContext, dg.ScheduleEvaluationContext))),
                None,
            )
            if context is None:  # called without its context (e.g. directly in a test): nothing to record against
                return fn(*args, **kwargs)
            sensor = isinstance(context, dg.SensorEvaluationContext)
            at = utcnow() if sensor else (context.scheduled_execution_time or utcnow())
            real = sensor or is_real_tick(context)
            kind = SENSOR if sensor else SCHEDULE
            try:
                result = fn(*args, **kwargs)
                items = _drain(result) if generator else _outcome_items(result)
            except Exception as exc:
                if real:
                    _beat(context, name, kind, at, exc, context.cursor if sensor else None, settings)
                raise
            if real:
                cursor = None
                if sensor:
                    final = next((i.cursor for i in items if isinstance(i, dg.SensorResult) and i.cursor), None)
                    cursor = final or context.cursor
                _beat(context, name, kind, at, items, cursor, settings)
            return items if generator else result

        _HEARTBEAT_NAMES.add(name)
        return evaluate  # type: ignore[return-value]

    return decorate


def _automation(definition: Any) -> bool:
    """Whether a sensor is an automation condition sensor: the daemon evaluates it, no function of ours runs."""
    return isinstance(definition, dg.AutomationConditionSensorDefinition)


def with_heartbeats(defs: dg.Definitions) -> dg.Definitions:
    """`defs` itself, once every sensor and schedule in it is known to leave heartbeats (`heartbeat`).

    Automation condition sensors run no function of ours: Dagster records their ticks (and
    their evaluations) itself, and the watchdog leaves them out.

    Raises:
        ValueError: naming the sensors and schedules whose function does not carry `heartbeat`.
    """
    names = [s.name for s in [*(defs.sensors or []), *(defs.schedules or [])] if hasattr(s, "name") and not _automation(s)]
    missing = sorted(name for name in names if name not in _HEARTBEAT_NAMES)
    if missing:
        raise ValueError(
            f"sensors and schedules without heartbeats (decorate their function with "
            f"opx_learning.defs.monitors.heartbeat): {', '.join(missing)}"
        )
    return defs


def _when(timestamp: float | None) -> datetime | None:
    return datetime.fromtimestamp(timestamp, UTC) if timestamp else None


def instigators(instance: dg.DagsterInstance, repository: dg.RepositoryDefinition) -> list[Instigator]:
    """The repository's sensors and schedules with their status in the instance (RUNNING or not, since when).

    A stored RUNNING / STOPPED state (an operator's choice) wins over the default status
    in code; DECLARED_IN_CODE or no state means the default. States are matched by name
    (one code location per instance).
    """
    states: dict[str, list[Any]] = {}
    for state in instance.all_instigator_state():
        states.setdefault(state.instigator_name, []).append(state)
    found = []
    sensors = [sensor for sensor in repository.sensor_defs if not _automation(sensor)]
    for kind, definitions in ((SENSOR, sensors), (SCHEDULE, repository.schedule_defs)):
        for definition in definitions:
            mine = states.get(definition.name, [])
            default = definition.default_status.value == "RUNNING"
            statuses = {state.status.value for state in mine}
            if "RUNNING" in statuses:
                running = True
            elif "DECLARED_IN_CODE" in statuses or not statuses:
                running = default
            else:
                running = False
            since = None
            for state in mine:
                # A sensor's data says when it was last started, a schedule's when it started.
                started = "last_sensor_start_timestamp" if kind == SENSOR else "start_timestamp"
                since = _when(getattr(state.instigator_data, started, None)) or since
            cron = getattr(definition, "cron_schedule", None) if kind == SCHEDULE else None
            found.append(Instigator(definition.name, kind, running, since, cron if isinstance(cron, str) else None))
    return found


def expected_tick(cron: str, timezone: str | None, now: datetime) -> datetime:
    """The latest cron time more than 5 minutes before `now` (in the schedule's timezone).

    Dagster's own cron arithmetic, through a time-window partition set on the cron: the
    last window complete at the limit ends at the latest cron time not after it.
    """
    limit = now - STALE_AFTER
    partitions = dg.TimeWindowPartitionsDefinition(
        cron_schedule=cron,
        start=(limit - timedelta(days=800)).astimezone(UTC).replace(tzinfo=None),
        timezone=timezone or "UTC",
        fmt="%Y-%m-%dT%H:%M",
    )
    with dg.partition_loading_context(effective_dt=limit):
        window = partitions.get_last_partition_window()
    if window is None:
        raise ValueError(f"cron {cron!r} has no time in the 800 days before {limit.isoformat()}")
    tick = window.end if window.end < limit else window.start
    return tick.astimezone(UTC)


def newest_audit_change(audit: AuditLog, now: datetime) -> datetime | None:
    """The newest change (end, else start) among audit records started in the last 25 hours."""
    records = audit.query(since=now - MAX_CATCH_UP - timedelta(hours=1))
    return max((record.end_time or record.start_time for record in records), default=None)


def _repository(settings: Settings) -> dg.RepositoryDefinition:
    from opx_learning.app import launch

    return launch.definitions(settings).get_repository_def()


def _audit(settings: Settings) -> AuditLog | None:

    try:
        return guard_for(settings).audit
    except BackendUnavailable:
        return None


def monitors_report(
    now: datetime,
    *,
    settings: Settings,
    instance: dg.DagsterInstance | None = None,
    repository: dg.RepositoryDefinition | None = None,
    audit: AuditLog | None = None,
    names: Iterable[str] | None = None,
) -> list[dict[str, Any]]:
    """One row per sensor and schedule: last tick, age, and whether it is stale (rules in `alerts.heartbeats`).

    Args:
        now: evaluation time.
        settings: the code location's settings.
        instance: the Dagster instance (default: `DagsterInstance.get()` of DAGSTER_HOME).
        repository: the code location's repository (default: the one `build_defs(settings)` builds).
        audit: the audit trail, for the alert sensor's cursor lag (default: the settings' backend's,
            read only when a cursor is to be judged; unreadable: the lag is not judged).
        names: only these instigators (default: all).

    Returns:
        Rows (dicts) of `opx_learning.alerts.heartbeats.assess`, sensors first, each group by name.
    """
    instance = instance or dg.DagsterInstance.get()
    repository = repository or _repository(settings)
    wanted = set(names) if names is not None else None
    everything = instigators(instance, repository)
    beats = read_heartbeats(instance, [i.name for i in everything])
    baseline = min((beat.first_tick for beat in beats.values()), default=None)
    newest = None
    if any(beat.audit_cursor for name, beat in beats.items() if wanted is None or name in wanted):
        audit = audit if audit is not None else _audit(settings)
        try:
            newest = newest_audit_change(audit, now) if audit is not None else None
        except BackendUnavailable as exc:
            _log.warning("audit trail unreadable, cursor lag not judged: %s", exc)
    rows = []
    for instigator in sorted(everything, key=lambda i: (i.kind != SENSOR, i.name)):
        if wanted is not None and instigator.name not in wanted:
            continue
        expected = None
        if instigator.kind == SCHEDULE and instigator.cron:
            schedule = repository.get_schedule_def(instigator.name)
            expected = expected_tick(instigator.cron, schedule.execution_timezone, now)
        rows.append(assess(instigator, beats.get(instigator.name), now=now, baseline=baseline,
                           expected_tick=expected, newest_audit_change=newest))
    return rows


def raise_stale_alerts(
    instance: dg.DagsterInstance, publisher: AlertPublisher, rows: Iterable[dict[str, Any]], now: datetime
) -> list[Alert]:
    """Publish a P1 MONITOR_STALE for each stale row whose episode was not paged yet; return those published."""
    published = []
    for row in rows:
        if not row["stale"]:
            continue
        key = ALERTED_KEY_PREFIX + row["name"]
        if instance.run_storage.get_cursor_values({key}).get(key) == row["episode"]:
            continue
        alert = stale_alert(row, now)
        if publisher.publish(alert):
            _set(instance, key, row["episode"])
            published.append(alert)
    return published


def watch_watchdog(
    instance: dg.DagsterInstance,
    publisher: AlertPublisher,
    now: datetime,
    settings: Settings,
    repository: dg.RepositoryDefinition | None = None,
) -> list[Alert]:
    """What the alert sensor runs each tick: P1 when the watchdog sensor itself is stale (errors are logged)."""
    try:
        rows = monitors_report(now, settings=settings, instance=instance, repository=repository, names=[WATCHDOG])
        return raise_stale_alerts(instance, publisher, rows, now)
    except Exception as exc:  # noqa: BLE001 - watching the watchdog must not stop the alert sensor's own work
        _log.error("watchdog heartbeat not judged: %s: %s", type(exc).__name__, exc)
        return []


def _stale_text(rows: list[dict[str, Any]]) -> str:
    return "; ".join(f"{row['name']} {row['reason']}" for row in rows if row["stale"])


def _watchdog_tick(
    context: dg.SensorEvaluationContext, safety: SafetyResource, alerts: AlertsResource
) -> dg.SkipReason:
    """Judge every other sensor and schedule from its heartbeat; the tick never launches a run."""
    now = utcnow()
    repository = context.repository_def or _repository(safety.settings())
    names = [i.name for i in instigators(context.instance, repository) if not i.name.endswith(WATCHDOG)]
    try:
        audit: AuditLog | None = safety.guard().audit
    except BackendUnavailable:
        audit = None
    rows = monitors_report(
        now, settings=safety.settings(), instance=context.instance, repository=repository, audit=audit, names=names
    )
    raised = raise_stale_alerts(context.instance, alerts.publisher(), rows, now)
    for alert in raised:
        context.log.warning(f"P1 {alert.alarm} {alert.operation}: {alert.details['reason']}")
    stale = [row for row in rows if row["stale"]]
    watched = sum(row["status"] == "RUNNING" for row in rows)
    text = f"{watched} running instigator(s) watched, {len(stale)} stale, {len(raised)} alert(s) published"
    return dg.SkipReason(text + (f": {_stale_text(stale)}" if stale else ""))


def monitors_summary(
    instance: dg.DagsterInstance,
    alerts: Any,
    now: datetime,
    settings: Settings,
    repository: dg.RepositoryDefinition | None = None,
) -> tuple[bool, str, dict[str, Any]]:
    """The checklist item `monitors_ticking`: (PASS / WARN / FAIL, the figure, metadata), raising unpaged P1s.

    FAIL when a RUNNING sensor or schedule is stale; WARN when none has ever ticked on the
    instance (no daemon: no alert can fire); PASS when every running one ticked on time.

    Args:
        instance: the Dagster instance whose instigators and heartbeats are judged.
        alerts: the alert publisher for the P1 MONITOR_STALE of a stale episode not yet paged.
        now: evaluation time.
        settings: the code location's settings.
        repository: the code location's repository (default: the one `build_defs(settings)` builds).

    Returns:
        Whether nothing is stale, the one-line figure, and metadata with a Markdown table of last ticks.
    """
    rows = monitors_report(now, settings=settings, instance=instance, repository=repository)
    raised = raise_stale_alerts(instance, alerts, rows, now)
    stale = [row for row in rows if row["stale"]]
    running = [row for row in rows if row["status"] == "RUNNING"]
    metadata: dict[str, Any] = {
        "running": len(running),
        "stale": len(stale),
        "alerts_published": len(raised),
        "last_ticks": dg.MetadataValue.md("\n".join(
            ["| name | kind | status | last tick | stale |", "|---|---|---|---|---|"]
            + [f"| {r['name']} | {r['kind']} | {r['status']} | {r['last_tick'] or '-'} | "
               f"{'yes: ' + r['reason'] if r['stale'] else 'no'} |" for r in rows]
        )),
    }
    if stale:
        return "FAIL", f"MONITOR_STALE: {_stale_text(stale)}", metadata
    if not any(row["last_tick"] for row in rows):
        text = (
            "no monitor is running: drift and failure alerts cannot fire (no sensor or schedule has ticked on this "
            f"instance; start dagster-daemon, e.g. with `opx-learning ui`) at {iso(now)}"
        )
        return "WARN", text, metadata
    return "PASS", f"{len(running)} running sensor(s) and schedule(s) ticking on time at {iso(now)}", metadata


def _ticking(context: dg.AssetCheckExecutionContext, alerts: AlertsResource) -> dg.AssetCheckResult:
    """The checklist item run alone (e.g. from the UI): FAIL (ERROR) with the stale instigators, WARN when none ticks."""
    try:
        repository: dg.RepositoryDefinition | None = context.repository_def
    except Exception:  # noqa: BLE001 - Dagster's check fails: a job executed in process has no repository
        repository = None  # use the code location's
    status, text, metadata = monitors_summary(context.instance, alerts.publisher(), utcnow(), alerts.settings(), repository)
    severity = dg.AssetCheckSeverity.WARN if status == "WARN" else dg.AssetCheckSeverity.ERROR
    return dg.AssetCheckResult(passed=status == "PASS", severity=severity, description=text, metadata=metadata)


def watched_sensor_names(settings: Settings, repository: dg.RepositoryDefinition | None = None) -> list[str]:
    """Sensors that start RUNNING (each gets a CloudWatch heartbeat alarm from `monitoring deploy`)."""
    repository = repository or _repository(settings)
    return sorted(s.name for s in repository.sensor_defs if s.default_status is dg.DefaultSensorStatus.RUNNING)


def build_monitors(loc: Location) -> dg.Definitions:
    """The heartbeats carrier asset, its `monitors_ticking` check and the watchdog sensor of one location."""
    names = loc.names
    sensor_heartbeats = dg.AssetSpec(
        names.key("sensor_heartbeats"),
        group_name="monitoring",
        kinds={"dagster"},
        description="The last tick of every sensor and schedule (heartbeats in the Dagster instance), "
        "watched by `monitors_watchdog_sensor` and the morning checklist.",
    )

    @dg.sensor(
        name=names(WATCHDOG),
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        required_resource_keys=names.required("safety", "alerts"),
        description="Raises a P1 MONITOR_STALE when a RUNNING sensor has not ticked for 5 minutes, a schedule missed "
        "its cron time by 5 minutes, or the alert sensor's cursor lags the audit trail by 10 minutes.",
    )
    @heartbeat(names(WATCHDOG), loc.settings)
    def monitors_watchdog_sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        """Judge every other sensor and schedule from its heartbeat; the tick never launches a run."""
        r = names.resources(context)
        return _watchdog_tick(context, r.safety, r.alerts)

    @dg.asset_check(
        asset=sensor_heartbeats.key,
        name="monitors_ticking",
        required_resource_keys=names.required("alerts"),
        description="Every RUNNING sensor ticked in the last 5 minutes, no schedule missed its cron time, "
        "the alert sensor's cursor is within 10 minutes of the audit trail (P1 MONITOR_STALE otherwise).",
    )
    def monitors_ticking(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        """The checklist item run alone (e.g. from the UI): FAIL (ERROR) with the stale instigators, WARN when none ticks."""
        return _ticking(context, names.resources(context).alerts)

    return dg.Definitions(assets=[sensor_heartbeats], asset_checks=[monitors_ticking], sensors=[monitors_watchdog_sensor])
