"""End to end: `dagster-daemon run` with `late_outcomes_automation` started refreshes a late day, guarded and audited.

A demo over the two whole months before this one (the automation looks 400 days back, so the
dates follow today), then outcomes ingested into one past day: the daemon refreshes that day,
its week and its month and nothing else, as principal `automation`; under the kill switch the
same kind of ingest refreshes nothing and the skip is audited.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from click.testing import CliRunner

from opx_learning.cli.main import cli
from opx_learning_tests.processes import spawn, stop
from opx_learning_tests.wiring import resource

ROOT = Path(__file__).resolve().parents[2]
DAGSTER = Path(sys.executable).with_name("dagster")
DAEMON = Path(sys.executable).with_name("dagster-daemon")
SENSOR = "late_outcomes_automation"
WAIT = 240
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}


def _invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _export(path: Path, day: date, count: int, tag: str) -> Path:
    """`count` outcomes of `day` in the platform's nested camelCase export form."""
    lines = []
    for i in range(count):
        lines.append(json.dumps({
            "outcomeId": f"{tag}-{i}",
            "incidentId": f"inc-{tag}-{i}",
            "service": "checkout-service",
            "recordedAt": f"{day.isoformat()}T{10 + i:02d}:00:00.000Z",
            "validatedAt": f"{day.isoformat()}T{10 + i:02d}:30:00.000Z",
            "classification": {"truePositive": i % 2 == 0, "falsePositive": i % 2 == 1, "rootCause": "db pool",
                               "resolutionType": "FIXED"},
            "timing": {"ttd": 60000, "ttr": 600000},
            "predictedConfidence": 0.75,
            "humanAssessment": {"confidenceRating": 0.5},
        }))
    path.write_text("\n".join(lines) + "\n")
    return path


def _wait(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _materializations(instance: dg.DagsterInstance, asset: str) -> dict[str, list[Any]]:
    """Every materialization of `asset`, newest first, by partition."""
    found: dict[str, list[Any]] = {}
    for record in instance.fetch_materializations(dg.AssetKey(asset), limit=10_000).records:
        found.setdefault(record.partition_key, []).append(record)
    return found


def _counts(instance: dg.DagsterInstance, asset: str) -> dict[str, int]:
    return {key: len(records) for key, records in _materializations(instance, asset).items()}


def _automation_runs(instance: dg.DagsterInstance) -> list[Any]:
    return list(instance.get_runs(dg.RunsFilter(tags={"dagster/from_automation_condition": "true"})))


def _sensor_ticks(instance: dg.DagsterInstance) -> list[Any]:
    for state in instance.all_instigator_state():
        if state.instigator_name == SENSOR:
            return list(instance.get_ticks(state.instigator_origin_id, state.selector_id))
    return []


@pytest.fixture
def daemons(opx_home: Path, dagster_home: Path) -> Iterator[list[subprocess.Popen]]:
    """The `dagster-daemon run` processes a test starts; each whole process group is stopped afterwards."""
    started: list[subprocess.Popen] = []
    try:
        yield started
    finally:
        for process in started:
            stop(process)


def _start_daemon(started: list[subprocess.Popen], dagster_home: Path) -> None:
    with open(dagster_home / "daemon.log", "a") as log:
        started.append(spawn([str(DAEMON), "run"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT))


def _refreshed(instance: dg.DagsterInstance, day: date, added: int, before: dict[str, dict[str, int]],
               incidents: int, known: set[str]) -> set[str]:
    """Wait for the automation to refresh `day`; check what it refreshed and how it is audited; its run ids."""
    month = day.replace(day=1).isoformat()

    def done() -> bool:
        runs = [run for run in _automation_runs(instance) if run.run_id not in known]
        finished = runs and all(run.status.value in TERMINAL for run in runs)
        snapshots = _counts(instance, "learning_snapshots_monthly").get(month, 0)
        return bool(finished) and snapshots > before["learning_snapshots_monthly"][month]

    _wait(done, WAIT, f"the automation's refresh of {day}")
    runs = [run for run in _automation_runs(instance) if run.run_id not in known]
    assert {run.status.value for run in runs} == {"SUCCESS"}, [(run.run_id, run.status) for run in runs]

    # The late day's summary counts the new incidents; its month's calibration was recomputed.
    newest = _materializations(instance, "pattern_summaries_daily")[day.isoformat()][0]
    assert newest.asset_materialization.metadata["total_incidents"].value == incidents + added
    assert _counts(instance, "confidence_calibration")[month] == before["confidence_calibration"][month] + 1
    # Every other day is untouched.
    for name in ("daily_outcomes", "pattern_summaries_daily"):
        after = _counts(instance, name)
        assert {k: v for k, v in after.items() if k != day.isoformat()} == {
            k: v for k, v in before[name].items() if k != day.isoformat()}
        assert after[day.isoformat()] == before[name][day.isoformat()] + 1

    # Audited as the automation, not as a person.
    run_ids = {run.run_id for run in runs}
    records = [r for r in resource("safety").guard().audit.recent(200) if r.run_id in run_ids]
    daily = [r for r in records if r.operation_type.value == "PATTERN_EXTRACTION"
             and r.parameters.get("time_window") == "DAILY"]
    assert len(daily) == 1 and daily[0].results["partitions_stored"] == [day.isoformat()]
    assert {(r.triggered_by.principal, r.trigger_type.value, r.status.value) for r in records} == {
        ("automation", "AUTOMATION", "SUCCESS")}
    assert {r.operation_type.value for r in records} == {"PATTERN_EXTRACTION", "CALIBRATION", "SNAPSHOT"}
    return run_ids


def _state(instance: dg.DagsterInstance, day: date) -> tuple[dict[str, dict[str, int]], int]:
    before = {name: _counts(instance, name) for name in (
        "daily_outcomes", "pattern_summaries_daily", "confidence_calibration", "learning_snapshots_monthly")}
    (summary,) = _materializations(instance, "pattern_summaries_daily")[day.isoformat()]
    return before, summary.asset_materialization.metadata["total_incidents"].value


def test_the_daemon_refreshes_late_days_as_automation_and_skips_them_under_the_kill_switch(
    daemons: list[subprocess.Popen], opx_home: Path, dagster_home: Path, tmp_path: Path
) -> None:
    end = datetime.now(UTC).date().replace(day=1)  # the first of this month
    start = ((end - timedelta(days=1)).replace(day=1) - timedelta(days=1)).replace(day=1)  # two months before
    _invoke("demo", "--days", str((end - start).days), "--per-day", "20", "--end", end.isoformat(), "--json")
    first = (end - timedelta(days=1)).replace(day=10)  # the 10th of last month
    second = start.replace(day=12)  # the 12th of the month before
    third = second + timedelta(days=5)

    instance = dg.DagsterInstance.get()
    try:
        # Outcomes ingested before the sensor is started are refreshed once it starts.
        before, incidents = _state(instance, first)
        _invoke("ingest", str(_export(tmp_path / "first.jsonl", first, 5, "first")))
        started = subprocess.run([str(DAGSTER), "sensor", "start", SENSOR], cwd=ROOT, capture_output=True, text=True,
                                 timeout=120, check=False)
        assert started.returncode == 0, started.stdout + started.stderr
        _start_daemon(daemons, dagster_home)
        known = _refreshed(instance, first, 5, before, incidents, set())

        # And so are outcomes ingested while it runs.
        before, incidents = _state(instance, second)
        _invoke("ingest", str(_export(tmp_path / "second.jsonl", second, 4, "second")))
        known |= _refreshed(instance, second, 4, before, incidents, known)

        # Under the kill switch, a late day refreshes nothing and the skip is audited.
        _invoke("kill-switch", "disable", "--reason", "incident 11", "--principal", "ops-admin")
        held = {name: _counts(instance, name) for name in ("daily_outcomes", "pattern_summaries_daily")}
        _invoke("ingest", str(_export(tmp_path / "third.jsonl", third, 3, "third")))

        def skipped() -> list[Any]:
            new = [run for run in _automation_runs(instance) if run.run_id not in known]
            if not new or any(run.status.value not in TERMINAL for run in new):
                return []
            ids = {run.run_id for run in new}
            return [r for r in resource("safety").guard().audit.recent(200) if r.run_id in ids]

        (record,) = _wait(skipped, WAIT, "the automation's run under the kill switch")
        assert (record.operation_type.value, record.trigger_type.value, record.status.value) == (
            "PATTERN_EXTRACTION", "AUTOMATION", "SKIPPED")
        assert record.triggered_by.principal == "automation" and record.skip_reason == "KILL_SWITCH_ACTIVE"
        assert {name: _counts(instance, name) for name in held} == held
    finally:
        instance.dispose()
