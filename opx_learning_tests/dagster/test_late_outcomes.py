"""Late outcomes: a data version per stored day, the `late_outcomes` conditions, and the guard on automation runs.

A demo home (every asset materialized over whole months) is the starting point; outcomes
ingested later into some of its days must change exactly those days' data versions, and
the automation conditions must request exactly the partitions computed from them, once.
Expected keys are written out by hand from the calendar (weeks start on Sunday).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from click.testing import CliRunner

from opx_learning.app import launch
from opx_learning.cli.main import cli
from opx_learning.safety.models import AuthorityType, Principal
from opx_learning_tests.dagster.conftest import automation_tick
from opx_learning_tests.exports import record
from opx_learning_tests.wiring import location, resource, settings

LATE_ASSETS = (
    "daily_outcomes", "pattern_summaries_daily", "pattern_summaries_weekly", "confidence_calibration",
    "confidence_calibration_by_service", "drift_metrics", "learning_snapshots_daily", "learning_snapshots_weekly",
    "learning_snapshots_monthly",
)
# The assets one run may materialize together, by cadence (as the demo and the daemon's range runs do).
RUN_GROUPS = (
    ("daily_outcomes", "pattern_summaries_daily"),
    ("pattern_summaries_weekly",),
    ("confidence_calibration", "drift_metrics", "confidence_calibration_by_service"),
    ("learning_snapshots_daily",),
    ("learning_snapshots_weekly",),
    ("learning_snapshots_monthly",),
)
MONTHLY = ("confidence_calibration", "confidence_calibration_by_service", "drift_metrics", "learning_snapshots_monthly")
WEEKLY = ("pattern_summaries_weekly", "learning_snapshots_weekly")
UNLIMITED = "PATTERN_EXTRACTION=100,CALIBRATION=100,SNAPSHOT=100"
# What late outcomes into 2025-10-15 refresh. It is a Wednesday: its week starts on Sunday 2025-10-12,
# its month on 2025-10-01; November's drift reads October's calibration too (its change column).
ONE_DAY = {
    ("daily_outcomes", "2025-10-15"), ("pattern_summaries_daily", "2025-10-15"),
    ("learning_snapshots_daily", "2025-10-15"),
    ("pattern_summaries_weekly", "2025-10-12"), ("learning_snapshots_weekly", "2025-10-12"),
    ("confidence_calibration", "2025-10-01"), ("confidence_calibration_by_service", "2025-10-01"),
    ("drift_metrics", "2025-10-01"), ("drift_metrics", "2025-11-01"), ("learning_snapshots_monthly", "2025-10-01"),
}


def _invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _export(path: Path, days: list[str], per_day: int, tag: str) -> Path:
    rows = [record(f"{tag}-{day}-{i}", day, 10 + i % 10) for day in days for i in range(per_day)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _days(first: str, count: int) -> list[str]:
    start = date.fromisoformat(first)
    return [(start + timedelta(days=i)).isoformat() for i in range(count)]


def _observed(instance: dg.DagsterInstance) -> list[tuple[str, str]]:
    """Every observation of `outcome_days`, oldest first: (day, data version)."""
    records = instance.fetch_observations(dg.AssetKey("outcome_days"), limit=10_000, ascending=True).records
    return [(r.partition_key, r.asset_observation.tags["dagster/data_version"]) for r in records]


def _manifest(home: Path) -> dict[str, str]:
    """The manifest's latest SHA-256 of each stored outcome day, read from state.db directly."""
    with sqlite3.connect(home / "state.db") as db:
        rows = db.execute("SELECT key, sha256 FROM manifest WHERE store = 'outcomes' ORDER BY seq").fetchall()
    latest = {}
    for key, sha in rows:
        if key.endswith("/part-0.parquet"):
            latest[key.split("/")[0].removeprefix("recorded_date=")] = sha
    return latest


def _file_digest(home: Path, day: str) -> str:
    return hashlib.sha256((home / "outcomes" / f"recorded_date={day}" / "part-0.parquet").read_bytes()).hexdigest()


@pytest.fixture
def demo_home(opx_home: Path, dagster_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A demo over Sep-Nov 2025 (whole months: every calibration has its outcomes), with room in the rate limits."""
    monkeypatch.setenv("OPX_RATE_LIMITS", UNLIMITED)
    _invoke("demo", "--days", "91", "--per-day", "20", "--end", "2025-12-01", "--json")
    return opx_home


class Automation:
    """`dg.evaluate_automation_conditions` over the late-outcomes assets, at a fixed time, keeping its cursor."""

    def __init__(self, instance: dg.DagsterInstance, at: datetime) -> None:
        self.instance = instance
        self.at = at
        self.defs = location()
        self.cursor: Any = None
        self.requested: list[tuple[str, str]] = []

    def evaluate(self) -> dict[str, list[str]]:
        """One tick: the partitions requested, by asset."""
        result = dg.evaluate_automation_conditions(
            defs=self.defs,
            instance=self.instance,
            asset_selection=dg.AssetSelection.assets(*LATE_ASSETS),
            evaluation_time=self.at,
            cursor=self.cursor,
        )
        self.cursor = result.cursor
        found = {}
        for name in LATE_ASSETS:
            keys = sorted(result.get_requested_partitions(dg.AssetKey(name)))
            if keys:
                found[name] = keys
                self.requested.extend((name, key) for key in keys)
        return found

    def run(self, requested: dict[str, list[str]]) -> None:
        """Materialize what a tick requested, one run per group of assets and contiguous range."""
        for group in RUN_GROUPS:
            names = [name for name in group if name in requested]
            if not names:
                continue
            keys = sorted({key for name in names for key in requested[name]})
            for span in _contiguous(keys, _step(names[0])):
                summary = launch.materialize(settings(), self.instance, names, span)
                assert summary.success, summary


def _step(name: str) -> Any:
    """The key after a key of `name`'s cadence (weekly and monthly keys are their first day)."""
    if name in MONTHLY:
        return lambda key: (date.fromisoformat(key).replace(day=28) + timedelta(days=4)).replace(day=1).isoformat()
    days = 7 if name in WEEKLY else 1
    return lambda key: (date.fromisoformat(key) + timedelta(days=days)).isoformat()


def _contiguous(keys: list[str], step: Any) -> Iterator[list[str]]:
    span: list[str] = []
    for key in keys:
        if span and step(span[-1]) != key:
            yield span
            span = []
        span.append(key)
    if span:
        yield span


# -- data versions ---------------------------------------------------------------------------------


def test_each_stored_day_has_the_manifest_hash_as_data_version_and_only_changed_days_change(
    demo_home: Path, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    days = _days("2025-09-01", 91)
    manifest = _manifest(demo_home)
    assert sorted(manifest) == days
    # The demo observed every stored day once, with the manifest's hash, which is the file's own digest.
    observed = _observed(instance)
    assert sorted(observed) == sorted((day, manifest[day]) for day in days)
    assert all(manifest[day] == _file_digest(demo_home, day) for day in days)

    # Extra outcomes into one day: one new observation, for that day, with its new hash.
    _invoke("ingest", str(_export(tmp_path / "late.jsonl", ["2025-10-15"], 3, "late")))
    after = _manifest(demo_home)
    assert {day for day in days if after[day] != manifest[day]} == {"2025-10-15"}
    assert _observed(instance)[len(observed):] == [("2025-10-15", _file_digest(demo_home, "2025-10-15"))]
    assert after["2025-10-15"] == _file_digest(demo_home, "2025-10-15") != manifest["2025-10-15"]

    # The same content again writes nothing and changes no version; a fresh observation finds no change.
    _invoke("ingest", str(tmp_path / "late.jsonl"))
    from opx_learning.app.late import observe_outcome_days

    assert observe_outcome_days(settings(), instance, observed_by="test") == []
    assert len(_observed(instance)) == len(observed) + 1
    assert _manifest(demo_home) == after


# -- automation conditions -------------------------------------------------------------------------


def test_an_ingest_into_one_day_requests_exactly_its_day_week_and_month_once(
    demo_home: Path, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    automation = Automation(instance, datetime(2025, 12, 5, tzinfo=UTC))
    assert automation.evaluate() == {}  # the demo's own materializations request nothing

    _invoke("ingest", str(_export(tmp_path / "late.jsonl", ["2025-10-15"], 4, "late")))
    ticks = []
    for _ in range(6):
        requested = automation.evaluate()
        ticks.append(requested)
        automation.run(requested)
    assert sorted(automation.requested) == sorted(ONE_DAY), ticks  # each once, nothing else
    assert ticks[-2:] == [{}, {}]  # settled: later ticks request nothing
    # The day's outcomes come first; snapshots come after the summaries and calibration they hold.
    assert ticks[0] == {"daily_outcomes": ["2025-10-15"], "pattern_summaries_daily": ["2025-10-15"]}
    snapshot_tick = next(i for i, tick in enumerate(ticks) if "learning_snapshots_monthly" in tick)
    calibration_tick = next(i for i, tick in enumerate(ticks) if "confidence_calibration" in tick)
    assert snapshot_tick > calibration_tick

    # The same export again changes no version: nothing is requested.
    _invoke("ingest", str(tmp_path / "late.jsonl"))
    assert automation.evaluate() == {}


def test_outcomes_ingested_before_the_first_evaluation_are_refreshed_once(
    demo_home: Path, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    _invoke("ingest", str(_export(tmp_path / "late.jsonl", ["2025-10-15"], 4, "late")))
    automation = Automation(instance, datetime(2025, 12, 5, tzinfo=UTC))
    ticks = []
    for _ in range(6):
        requested = automation.evaluate()
        ticks.append(requested)
        automation.run(requested)
    assert ticks[0] == {"daily_outcomes": ["2025-10-15"]}  # the first evaluation catches up on the day
    assert sorted(automation.requested) == sorted(ONE_DAY), ticks
    assert ticks[-2:] == [{}, {}]


def test_a_60_day_burst_requests_each_affected_partition_once(
    demo_home: Path, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    automation = Automation(instance, datetime(2025, 12, 5, tzinfo=UTC))
    assert automation.evaluate() == {}
    burst = _days("2025-10-01", 60)  # 2025-10-01 .. 2025-11-29
    assert burst[-1] == "2025-11-29"
    _invoke("ingest", str(_export(tmp_path / "burst.jsonl", burst, 1, "burst")))
    ticks = []
    for _ in range(6):
        requested = automation.evaluate()
        ticks.append(requested)
        automation.run(requested)
    # Sundays from the one before Oct 1 (Sep 28) to the one before Nov 29 (Nov 23); week Nov 30 holds no burst day.
    weeks = ["2025-09-28", "2025-10-05", "2025-10-12", "2025-10-19", "2025-10-26", "2025-11-02", "2025-11-09",
             "2025-11-16", "2025-11-23"]
    months = ["2025-10-01", "2025-11-01"]
    expected = (
        [(name, day) for name in ("daily_outcomes", "pattern_summaries_daily", "learning_snapshots_daily") for day in burst]
        + [(name, week) for name in WEEKLY for week in weeks]
        + [(name, month) for name in ("confidence_calibration", "confidence_calibration_by_service",
                                      "learning_snapshots_monthly") for month in months]
        # drift of October and November, and of December? not computed by the demo (its data ends in November).
        + [("drift_metrics", month) for month in months]
    )
    assert len(automation.requested) == len(set(automation.requested)) == 60 * 3 + 9 * 2 + 2 * 4
    assert sorted(automation.requested) == sorted(expected)
    assert ticks[-2:] == [{}, {}]


# -- the guard on automation runs ------------------------------------------------------------------


def _automation_run(instance: dg.DagsterInstance, day: str, *, listed: bool = True) -> tuple[str, dg.ExecuteInProcessResult]:
    """Run the day's outcomes and summaries as the automation sensor's tick does (the tick lists the run if `listed`)."""
    run_id = str(uuid.uuid4())
    tick_id = automation_tick(instance, [run_id] if listed else [str(uuid.uuid4())])
    tags = {
        "dagster/from_automation_condition": "true",
        "dagster/sensor_name": "late_outcomes_automation",
        "dagster/tick": str(tick_id),
    }
    job = location().resolve_job_def("daily_patterns_job")
    result = job.execute_in_process(
        instance=instance, partition_key=day, tags=tags, run_id=run_id, raise_on_error=False,
        asset_selection=[dg.AssetKey("daily_outcomes"), dg.AssetKey("pattern_summaries_daily")],
    )
    return run_id, result


def _materializations(instance: dg.DagsterInstance, name: str, day: str) -> int:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(name), asset_partitions=[day]), limit=100
    ).records
    return len(records)


def _records_of(run_id: str) -> list[Any]:
    return [r for r in resource("safety").guard().audit.recent(50) if r.run_id == run_id]


def test_an_automation_run_under_the_kill_switch_refreshes_nothing_and_is_audited_skipped(
    demo_home: Path, instance: dg.DagsterInstance
) -> None:
    before = {name: _materializations(instance, name, "2025-10-15") for name in ("daily_outcomes", "pattern_summaries_daily")}
    resource("safety").guard().kill_switch.disable(Principal("ops-admin", AuthorityType.EMERGENCY_OVERRIDE), "incident 9")
    run_id, result = _automation_run(instance, "2025-10-15")
    assert result.success  # a skip is not a failure
    after = {name: _materializations(instance, name, "2025-10-15") for name in before}
    assert after == before  # nothing refreshed: neither the validation stage nor the summaries
    (record,) = _records_of(run_id)
    assert (record.operation_type.value, record.trigger_type.value, record.status.value) == (
        "PATTERN_EXTRACTION", "AUTOMATION", "SKIPPED")
    assert (record.triggered_by.principal, record.triggered_by.authority.value) == ("automation", "SYSTEM")
    assert record.skip_reason == "KILL_SWITCH_ACTIVE"
    assert instance.get_run_by_id(run_id).tags["opx/skipped"] == "KILL_SWITCH_ACTIVE"


def test_automation_tags_without_the_tick_listing_the_run_are_a_manual_run(
    demo_home: Path, instance: dg.DagsterInstance
) -> None:
    run_id, result = _automation_run(instance, "2025-10-15", listed=False)
    assert result.success
    (record,) = _records_of(run_id)
    assert (record.trigger_type.value, record.triggered_by.principal) == ("MANUAL", "dagster-ui")


def test_the_automation_rate_limit_refuses_beyond_its_limit(
    demo_home: Path, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPX_AUTOMATION_RATE_LIMITS", "PATTERN_EXTRACTION=2")
    statuses = []
    for day in ("2025-10-14", "2025-10-15", "2025-10-16"):
        run_id, result = _automation_run(instance, day)
        assert result.success
        (record,) = _records_of(run_id)
        assert (record.trigger_type.value, record.triggered_by.principal) == ("AUTOMATION", "automation")
        statuses.append((record.status.value, record.skip_reason))
    assert statuses == [("SUCCESS", None), ("SUCCESS", None), ("SKIPPED", "RATE_LIMIT_EXCEEDED")]
    # Only the first two days were refreshed by the automation.
    assert [_materializations(instance, "pattern_summaries_daily", day) for day in ("2025-10-14", "2025-10-15", "2025-10-16")] == [2, 2, 1]
    # People's own limits are counted apart: a manual trigger still runs.
    _invoke("trigger", "extract-patterns", "--start", "2025-10-16", "--end", "2025-10-17")


def test_status_lists_exactly_the_partitions_a_late_day_left_pending(demo_home: Path, tmp_path: Path) -> None:
    assert json.loads(_invoke("status", "--json"))["late_outcomes_pending"] == []
    _invoke("ingest", str(_export(tmp_path / "late.jsonl", ["2025-10-15"], 3, "status")), "--json")
    pending = json.loads(_invoke("status", "--json"))["late_outcomes_pending"]
    assert {(row["asset"], row["partition"]) for row in pending} == ONE_DAY
    assert len(pending) == len(ONE_DAY) and all(row["reason"] for row in pending)
    text = _invoke("status")
    assert all(partition in text for _, partition in ONE_DAY) and "pattern_summaries_weekly" in text
