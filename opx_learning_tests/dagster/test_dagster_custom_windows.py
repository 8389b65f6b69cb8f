"""On-demand pattern extraction and calibration over any window through `opx-learning trigger`."""

from __future__ import annotations

import json

import dagster as dg
import polars as pl
from click.testing import CliRunner
from polars.testing import assert_frame_equal

from opx_learning.cli.main import cli
from opx_learning.core.emerging import baseline_reach
from opx_learning.core.patterns import extract_patterns
from opx_learning.core.windows import Window
from opx_learning.defs.location import CUSTOM_WINDOWS
from opx_learning.stores.outcomes import outcome_store
from opx_learning_tests import wiring
from opx_learning_tests.wiring import resource


def _invoke(*args: str) -> tuple[int, dict, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    output = result.stdout
    report = json.loads(output[output.index("{\n") :]) if "--json" in args and "{\n" in output else {}
    return result.exit_code, report, result.output


def test_calibrate_partial_month_runs_one_custom_window(instance: dg.DagsterInstance, seeded: pl.DataFrame) -> None:
    code, report, output = _invoke("trigger", "calibrate", "--start", "2025-10-01", "--end", "2025-10-15", "--json")
    assert code == 0, output
    assert "is not whole calendar months: running it as one custom window 2025-10-01..2025-10-15" in report["note"]
    assert report["partitions"] == {"type": "CUSTOM", "first": "2025-10-01..2025-10-15", "last": "2025-10-01..2025-10-15", "count": 1}
    assert report["run"]["materialized"] == {"confidence_calibration_custom": 1}
    stored = resource("asset_storage").read("confidence_calibration_custom", "2025-10-01..2025-10-15")
    first_half = seeded.filter(pl.col("recorded_at").dt.month().eq(10) & pl.col("recorded_at").dt.day().lt(15))
    assert stored["outcome_count"] == first_half["predicted_confidence"].is_not_null().sum()
    assert stored["skipped_count"] == first_half["predicted_confidence"].is_null().sum()
    record = resource("safety").guard().audit.get(report["audit_id"])
    assert (record.status.value, record.trigger_type.value) == ("SUCCESS", "MANUAL")
    assert record.parameters["time_window"] == "CUSTOM"
    assert record.results["calibration_ids"] == [stored["calibration_id"]]
    assert instance.get_dynamic_partitions(CUSTOM_WINDOWS) == ["2025-10-01..2025-10-15"]


def test_custom_calibration_with_too_few_outcomes_fails_insufficient_data(
    instance: dg.DagsterInstance, seeded: pl.DataFrame
) -> None:
    code, report, output = _invoke(
        "trigger", "calibrate", "--type", "CUSTOM", "--start", "2025-08-20", "--end", "2025-09-01T06:00:00Z", "--json"
    )
    assert code == 1, output
    assert report["status"] == "FAILED"
    assert "INSUFFICIENT_DATA" in " ".join(report["run"]["failures"])
    record = resource("safety").guard().audit.get(report["audit_id"])
    assert record.status.value == "FAILED" and record.results["failure_reason"] == "INSUFFICIENT_DATA"
    # Six hours of September at ~40 outcomes a day: fewer than 30 with a confidence.
    assert record.results["outcome_count"] < 30


def test_extract_patterns_partial_days_is_custom_with_its_baseline(
    instance: dg.DagsterInstance, seeded: pl.DataFrame
) -> None:
    start, end = "2025-10-03T06:00:00Z", "2025-10-05T18:00:00Z"
    code, report, output = _invoke(
        "trigger", "extract-patterns", "--start", start, "--end", end, "--service", "payment-service", "--json"
    )
    assert code == 0, output
    key = "2025-10-03T06:00:00.000Z..2025-10-05T18:00:00.000Z"
    assert report["partitions"]["first"] == key and report["partitions"]["type"] == "CUSTOM"
    assert "is not whole days" in report["note"]
    window = Window.parse(start, end)
    outcomes = outcome_store(wiring.settings()).read(baseline_reach(window))
    stored = resource("asset_storage").read("pattern_summaries_custom", key)
    assert_frame_equal(stored, extract_patterns(outcomes, start, end))
    in_window = seeded.filter(pl.col("recorded_at").is_between(window.start, window.end, closed="left"))
    assert stored.filter(pl.col("service") == "ALL")["total_incidents"][0] == in_window.height
    payment = in_window.filter(pl.col("service") == "payment-service")
    assert report["service"]["total_incidents"] == payment.height
    record = resource("safety").guard().audit.get(report["audit_id"])
    assert record.results["summary_count"] == stored.height
    assert "work_duration_ms" in record.results and "duration_ms" not in record.results
    assert "summary_ids" not in record.results


def test_explicit_type_must_fit_the_range(instance: dg.DagsterInstance) -> None:
    code, _, output = _invoke("trigger", "calibrate", "--type", "monthly", "--start", "2025-10-03", "--end", "2025-11-01")
    assert code == 2
    assert "does not cover whole, complete calendar months" in output and "use --type custom" in output
    code, _, output = _invoke("trigger", "extract-patterns", "--type", "Weekly", "--start", "2025-10-01", "--end", "2025-10-08")
    assert code == 2 and "Sunday-to-Sunday weeks" in output
