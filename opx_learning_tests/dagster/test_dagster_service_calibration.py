"""The monthly per-service calibration asset and the calibration asset's pictures, on a real instance."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import dagster as dg
import polars as pl
from polars.testing import assert_frame_equal

from opx_learning.alerts.publishers import LocalAlertPublisher
from opx_learning.app.launch import console, definitions
from opx_learning.config import get_settings
from opx_learning.core.service_calibration import (
    calibrate_by_service,
    confidence_by_root_cause,
)
from opx_learning.core.windows import Window
from opx_learning.stores.outcomes import outcome_store
from opx_learning_tests import wiring
from opx_learning_tests.wiring import resource, settings

OCTOBER = "2025-10-01"
ASSET = "confidence_calibration_by_service"


def _run_month(instance: dg.DagsterInstance, month: str) -> dg.ExecuteInProcessResult:
    job = definitions(settings()).resolve_job_def("monthly_calibration_job")
    return job.execute_in_process(instance=instance, partition_key=month, raise_on_error=False, run_config=console(False))


def _metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == asset]
    return {key: getattr(value, "value", value) for key, value in event.materialization.metadata.items()}


def _service_alerts() -> list[dict]:
    alerts = LocalAlertPublisher(get_settings().alerts_file).read()
    return [a for a in alerts if a["alarm"] == "DRIFT" and a["details"].get("scope") == "service"]


def test_monthly_job_stores_per_service_calibration_and_raises_advisories_once(
    instance: dg.DagsterInstance, seeded: pl.DataFrame
) -> None:
    result = _run_month(instance, OCTOBER)
    assert result.success
    month = outcome_store(wiring.settings()).read(Window.parse("2025-10-01", "2025-11-01"))
    expected = calibrate_by_service(month, "2025-10-01", "2025-11-01")
    stored = resource("asset_storage").read(ASSET, OCTOBER)
    assert_frame_equal(stored, expected)
    meta = _metadata(result, ASSET)
    assert meta["services"] == month["service"].n_unique()
    assert meta["scored_outcomes"] == month["predicted_confidence"].is_not_null().sum()
    assert "| service | band | n | raw accuracy | shrunk accuracy (95 %)" in meta["miscalibrated_services"]
    assert "| band | services | outcomes | band accuracy | prior strength | fit |" in meta["band_priors"]
    # October is overconfident: one advisory per service with a band of >= 20 outcomes and |shrunk drift| > .15.
    drifted = expected.filter((pl.col("n") >= 20) & (pl.col("drift").abs() > 0.15))
    services = sorted(drifted["service"].unique().to_list())
    assert services and meta["advisories"] == len(services)
    alerts = _service_alerts()
    assert sorted(a["details"]["service"] for a in alerts) == services
    for alert in alerts:
        assert (alert["severity"], alert["action"], alert["operation"]) == ("P3", "ADVISORY_ONLY", "CALIBRATION")
        assert alert["details"]["month"] == "2025-10"
        assert all(band["n"] >= 20 and abs(band["drift"]) > 0.15 for band in alert["details"]["bands"])
    # Re-materializing the month pages no one again.
    assert _run_month(instance, OCTOBER).success
    assert len(_service_alerts()) == len(services)


def test_calibration_metadata_shows_the_diagram_and_where_confidence_is_wrong(
    instance: dg.DagsterInstance, seeded: pl.DataFrame, tmp_path: Path
) -> None:
    result = _run_month(instance, OCTOBER)
    assert result.success
    meta = _metadata(result, "confidence_calibration")
    match = re.fullmatch(r"!\[reliability diagram\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", meta["reliability_diagram"])
    assert match, meta["reliability_diagram"][:200]
    png = base64.b64decode(match.group(1))
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    month = outcome_store(wiring.settings()).read(Window.parse("2025-10-01", "2025-11-01"))
    analysis = confidence_by_root_cause(month, "2025-10-01", "2025-11-01")
    findings = analysis.filter(pl.col("significant"))
    assert meta["root_cause_findings"] == findings.height
    table = meta["where_confidence_is_wrong"]
    if findings.height:
        first = findings.row(0, named=True)
        assert f"{first['direction']} on root cause **{first['root_cause']}** in service **{first['service']}**" in table
        assert table.count("\n| ") == min(findings.height, 10)  # one line per listed finding
    else:
        assert table.startswith("No (service, root cause) with at least 20 scored outcomes shows a gap")
    # The generator's causes decide their own label (noise is always a false positive): each is listed
    # once, apart from the findings, whatever the number of services it occurs in.
    decided = analysis.filter(pl.col("decided_by_cause"))["root_cause"].unique().to_list()
    assert decided and "**Causes the platform cannot tell apart at detection time**" in table
    assert all(table.count(f"- **{cause}**:") == 1 for cause in decided)


def test_a_month_without_outcomes_stores_an_empty_frame(instance: dg.DagsterInstance, seeded: pl.DataFrame) -> None:
    job = definitions(settings()).resolve_job_def("monthly_calibration_job")
    result = job.execute_in_process(
        instance=instance, partition_key="2025-03-01", raise_on_error=False, run_config=console(False),
        asset_selection=[dg.AssetKey(ASSET)],
    )
    assert result.success
    assert resource("asset_storage").read(ASSET, "2025-03-01").is_empty()
    assert _metadata(result, ASSET)["services"] == 0
    assert _service_alerts() == []
