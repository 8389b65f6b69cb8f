"""`opx-learning demo` and `opx-learning trigger` end to end on a real Dagster instance."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from click.testing import CliRunner

from opx_learning.app.instance import FORMER_DAGSTER_YAML, ensure_dagster_home
from opx_learning.cli.environment import use_dagster_home
from opx_learning.cli.main import cli
from opx_learning.defs.location import CUSTOM_WINDOWS
from opx_learning_tests.wiring import partitions, settings


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_dagster_demo_end_to_end(
    instance: dg.DagsterInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "never-initialised"  # a fresh machine: the demo initialises its own home
    monkeypatch.setenv("OPX_HOME", str(home))
    code, output = _invoke("demo", "--days", "35", "--per-day", "40", "--end", "2025-12-01", "--json")
    report = json.loads(output[output.index("{\n") :])
    assert code == 0, output
    assert f"initialised local: {home / 'state.db'}" in output
    assert json.loads(_invoke("kill-switch", "status", "--json")[1])["enabled"] is True
    assert report["window"] == {"start": "2025-10-27T00:00:00.000Z", "end": "2025-12-01T00:00:00.000Z"}
    assert all(run["success"] for run in report["runs"])
    days = partitions().daily.get_partition_keys_in_range(dg.PartitionKeyRange("2025-10-27", "2025-11-30"))
    for asset in ("daily_outcomes", "pattern_summaries_daily", "learning_snapshots_daily"):
        assert set(days) <= instance.get_materialized_partitions(dg.AssetKey(asset)), asset
    for asset in ("confidence_calibration", "drift_metrics", "learning_snapshots_monthly"):
        assert {"2025-11-01"} <= instance.get_materialized_partitions(dg.AssetKey(asset)), asset
    assert report["checklist_at"] == "2025-12-01T09:00:00.000Z"  # the morning after the window, said in the report
    statuses = {(row["asset"], row["check"]): row["status"] for row in report["checklist"]}
    assert len(statuses) == 8 + 6 + 5  # 2025-12-01 is the first Monday of December: all three lists
    # The demo observed the stored days before computing them: nothing is pending.
    assert statuses[("daily_outcomes", "late_outcomes_pending")] == "PASS"
    # Nothing ticked (no daemon in a demo): no alert can fire, which is a WARN, not a PASS.
    assert statuses[("sensor_heartbeats", "monitors_ticking")] == "WARN"
    assert statuses[("stored_data", "stored_data_integrity")] == "PASS"
    assert statuses[("audit_trail_daily", "error_rate_under_10_percent_last_24h")] == "PASS"
    assert "FAIL" not in statuses.values()
    # The demo backfills: stored, but no SCHEDULED run, which the checklist says.
    assert statuses[("pattern_summaries_daily", "scheduled_daily_pattern_extraction")] == "WARN"
    assert statuses[("confidence_calibration", "calibration_drift_within_0_15")] == "WARN"  # overconfident November
    assert [row["month"] for row in report["drift"]] == ["2025-10", "2025-11"]
    assert report["open"]["command"].endswith("dagster dev")
    assert instance.get_dynamic_partitions(CUSTOM_WINDOWS) == ["2025-10-27..2025-12-01"]


def test_dagster_demo_ending_mid_month_materializes_every_month_it_touches(
    instance: dg.DagsterInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPX_HOME", str(tmp_path / "mid-month"))
    code, output = _invoke("demo", "--days", "32", "--per-day", "10", "--end", "2025-11-15", "--json")
    report = json.loads(output[output.index("{\n") :])
    assert code in (0, 1), output  # 1: a checklist item may FAIL on so little data; no run may fail
    assert [run["failures"] for run in report["runs"] if not run["success"]] == []
    # November is touched by the window, so its days are summarised to its end (the last ones empty).
    days = partitions().daily.get_partition_keys_in_range(dg.PartitionKeyRange("2025-10-01", "2025-11-30"))
    assert set(days) <= instance.get_materialized_partitions(dg.AssetKey("pattern_summaries_daily"))
    for asset in ("confidence_calibration", "learning_snapshots_monthly"):
        assert {"2025-10-01", "2025-11-01"} <= instance.get_materialized_partitions(dg.AssetKey(asset)), asset


def test_dagster_home_defaults_under_opx_home(opx_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DAGSTER_HOME")
    home = use_dagster_home(settings())
    assert home == opx_home / "dagster_home"
    config = (home / "dagster.yaml").read_text()
    assert "class: LocalRunCoordinator" in config and "class: BatchingSqliteEventLogStorage" in config


def test_dagster_home_with_the_former_default_yaml_gets_the_current_one(
    opx_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unchanged, customised = tmp_path / "unchanged", tmp_path / "customised"
    for home, text in ((unchanged, FORMER_DAGSTER_YAML), (customised, FORMER_DAGSTER_YAML + "# mine\n")):
        monkeypatch.setenv("DAGSTER_HOME", str(home))
        home.mkdir()
        (home / "dagster.yaml").write_text(text)
        ensure_dagster_home(settings())  # creates the instance's storage and marks it ready
        (home / "dagster.yaml").write_text(text)  # a home of an earlier release, already initialised
        ensure_dagster_home(settings())
    assert "class: LocalRunCoordinator" in (unchanged / "dagster.yaml").read_text()
    assert (customised / "dagster.yaml").read_text() == FORMER_DAGSTER_YAML + "# mine\n"


def test_dagster_trigger_range_is_one_run(instance: dg.DagsterInstance, seeded: pl.DataFrame) -> None:
    code, output = _invoke(
        "trigger", "extract-patterns", "--start", "2025-10-01", "--end", "2025-10-31T23:59:59.999Z",
        "--service", "payment-service", "--json",
    )
    assert code == 0, output
    report = json.loads(output[output.index("{\n") :])
    assert report["status"] == "SUCCESS"
    assert report["triggered_by"] == {"type": "ON_CALL_SRE", "principal": "alice"}
    assert report["partitions"] == {"type": "DAILY", "first": "2025-10-01", "last": "2025-10-31", "count": 31}
    assert report["run"]["materialized"] == {"daily_outcomes": 31, "pattern_summaries_daily": 31}
    assert report["audit_id"] in report["run"]["audit_ids"]
    october = seeded.filter(
        (pl.col("service") == "payment-service") & (pl.col("recorded_at").dt.month() == 10)
    )
    assert report["service"]["total_incidents"] == october.height
    assert len(instance.get_run_records()) == 1


def test_dagster_trigger_custom_snapshot(instance: dg.DagsterInstance, seeded: pl.DataFrame) -> None:
    code, output = _invoke("trigger", "snapshot", "--type", "CUSTOM", "--start", "2025-10-03",
                           "--end", "2025-10-09T23:59:59.999Z")
    assert code == 0, output
    assert "SNAPSHOT SUCCESS" in output
    assert instance.get_dynamic_partitions(CUSTOM_WINDOWS) == ["2025-10-03..2025-10-10"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["calibrate", "--start", "2025-13-01", "--end", "2025-12-01"], "--start: '2025-13-01'"),
        (["calibrate", "--start", "2025-10-01", "--end", "2025-09-01"], "--end: 2025-09-01T00:00:00.000Z must be after"),
        (["calibrate", "--type", "monthly", "--start", "2025-10-03", "--end", "2025-11-01"],
         "does not cover whole, complete calendar months"),
        (["calibrate", "--start", "2025-10-01", "--end", "garbage"], "Error: --end: 'garbage' is not a date"),
        (["snapshot", "--type", "WEEKLY", "--start", "2025-10-05", "--end", "2025-10-12"], "pattern summaries are missing"),
    ],
)
def test_dagster_trigger_rejects_bad_input(args: list[str], message: str, instance: dg.DagsterInstance) -> None:
    code, output = _invoke("trigger", *args)
    assert code == 2
    assert message in output


def test_dagster_trigger_rate_limit_refusal(
    instance: dg.DagsterInstance, seeded: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPX_RATE_LIMITS", "CALIBRATION=1")
    args = ["trigger", "calibrate", "--start", "2025-10-01", "--end", "2025-10-31T23:59:59.999Z"]
    assert _invoke(*args)[0] == 0
    code, output = _invoke(*args, "--json")
    refusal = json.loads(output)
    assert code == 1
    assert refusal["skip_reason"] == "RATE_LIMIT_EXCEEDED"
    assert refusal["rate_limit"]["remaining"] == 0 and refusal["rate_limit"]["retry_after"] > 0
    assert len(instance.get_run_records()) == 1


def test_dagster_demo_needs_32_days(dagster_home: Path) -> None:
    code, output = _invoke("demo", "--days", "7")
    assert code == 2 and "7 is not in the range 32<=x<=700" in output
    code, output = _invoke("demo", "--end", "garbage")
    assert code == 2 and "Error: --end: 'garbage' is not a date" in output and "end: end" not in output


def test_dagster_trigger_service_is_checked_before_any_rate_limit_slot(
    instance: dg.DagsterInstance, seeded: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPX_RATE_LIMITS", "PATTERN_EXTRACTION=1")
    day = ["trigger", "extract-patterns", "--start", "2025-10-01", "--end", "2025-10-02"]
    code, output = _invoke(*day, "--service", "  ")
    assert code == 2 and "Error: --service: '  ' is empty" in output
    code, output = _invoke(*day, "--service", "no-such-service")
    services = sorted(seeded.filter(pl.col("recorded_at").dt.day() == 1).filter(pl.col("recorded_at").dt.month() == 10)["service"].unique())
    assert code == 2
    assert f"--service: 'no-such-service' has no outcomes in 2025-10-01T00:00:00.000Z..2025-10-02T00:00:00.000Z; " \
        f"services with outcomes there: {', '.join(services)}" in output
    code, output = _invoke(*day, "--start", "2025-08-01", "--end", "2025-08-02", "--service", "payment-service")
    assert code == 2 and "no service has outcomes there" in output
    assert instance.get_run_records() == []
    code, output = _invoke(*day, "--service", f" {services[0]} ")  # the one slot is still free
    assert code == 0, output
    assert f"{services[0]}: " in output


def test_dagster_trigger_messages_are_single_and_clear(
    instance: dg.DagsterInstance, seeded: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, output = _invoke("trigger", "snapshot", "--start", "2025-10-03", "--end", "2025-10-10")
    assert code == 0, output
    assert "  partition 2025-10-03..2025-10-10 (custom), run " in output
    assert "2025-10-10..2025-10-03" not in output
    monkeypatch.setenv("OPX_RATE_LIMITS", "SNAPSHOT=1")
    code, output = _invoke("trigger", "snapshot", "--start", "2025-10-03", "--end", "2025-10-10")
    assert code == 1
    assert "Error: refused (RATE_LIMIT_EXCEEDED): alice may start 1 SNAPSHOT per hour; retry in " in output
    assert output.count("RATE_LIMIT_EXCEEDED") == 1 and output.lower().count("retry") == 1
    assert "Audit id SNAPSHOT#" in output


def test_dagster_trigger_type_choices_are_lowercase(dagster_home: Path) -> None:
    for command, shown in (("extract-patterns", "[daily|weekly|custom]"), ("calibrate", "[monthly|custom]"),
                           ("snapshot", "[daily|weekly|monthly|custom]")):
        code, output = _invoke("trigger", command, "--help")
        assert code == 0 and shown in " ".join(output.split()), output
        assert "DAILY]" not in output and "CUSTOM]" not in output
    assert "[default: custom]" in _invoke("trigger", "snapshot", "--help")[1]


def test_dagster_trigger_is_quiet_unless_verbose(instance: dg.DagsterInstance) -> None:
    args = ["trigger", "calibrate", "--start", "2025-06-01", "--end", "2025-06-30T23:59:59.999Z"]
    quiet = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert quiet.exit_code == 1
    assert "CALIBRATION FAILED" in quiet.stdout and "INSUFFICIENT_DATA" in quiet.stdout
    assert "Stack Trace" not in quiet.output and "Traceback" not in quiet.output
    assert len(quiet.stdout.splitlines()) <= 7  # launch, result, audit id, failure, 2 steps not run, look
    verbose = CliRunner().invoke(cli, [*args, "--verbose"], catch_exceptions=False)
    assert verbose.exit_code == 1 and "STEP_FAILURE" in verbose.stderr
