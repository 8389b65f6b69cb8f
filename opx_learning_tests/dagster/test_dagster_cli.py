"""`opx-learning demo` and `opx-learning trigger` end to end on a real Dagster instance."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from click.testing import CliRunner

from opx_learning.cli.main import cli
from opx_learning.cli.orchestration import ensure_dagster_home
from opx_learning.defs.partitions import CUSTOM_WINDOWS, daily_partitions


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_dagster_demo_end_to_end(instance: dg.DagsterInstance) -> None:
    code, output = _invoke("demo", "--days", "35", "--per-day", "40", "--end", "2025-12-01", "--json")
    report = json.loads(output[output.index("{\n") :])
    assert code == 0, output
    assert report["window"] == {"start": "2025-10-27T00:00:00.000Z", "end": "2025-12-01T00:00:00.000Z"}
    assert all(run["success"] for run in report["runs"])
    days = daily_partitions.get_partition_keys_in_range(dg.PartitionKeyRange("2025-10-27", "2025-11-30"))
    for asset in ("daily_outcomes", "pattern_summaries_daily", "learning_snapshots_daily"):
        assert set(days) <= instance.get_materialized_partitions(dg.AssetKey(asset)), asset
    for asset in ("confidence_calibration", "drift_metrics", "learning_snapshots_monthly"):
        assert {"2025-11-01"} <= instance.get_materialized_partitions(dg.AssetKey(asset)), asset
    statuses = {(row["asset"], row["check"]): row["status"] for row in report["checklist"]}
    assert len(statuses) == 23
    assert statuses[("pattern_summaries_daily", "error_rate_under_10_percent")] == "PASS"
    assert "FAIL" not in statuses.values()
    assert statuses[("confidence_calibration", "calibration_drift_within_0_15")] == "WARN"  # overconfident November
    assert [row["month"] for row in report["drift"]] == ["2025-10", "2025-11"]
    assert report["open"]["command"].endswith("dagster dev")
    assert instance.get_dynamic_partitions(CUSTOM_WINDOWS) == ["2025-10-27..2025-12-01"]


def test_dagster_home_defaults_under_opx_home(opx_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DAGSTER_HOME")
    home = ensure_dagster_home()
    assert home == opx_home / "dagster_home"
    assert "DefaultRunCoordinator" in (home / "dagster.yaml").read_text()


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
        (["calibrate", "--start", "2025-10-03", "--end", "2025-11-01"], "does not cover whole, complete calendar months"),
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
