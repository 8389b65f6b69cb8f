"""The daily integrity sweep is a morning-checklist item: PASS on intact data, FAIL with a P0 on damage."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import polars as pl

from opx_learning.app import launch
from opx_learning_tests.wiring import settings

MORNING = "2025-11-01T09:00:00Z"


def _integrity(rows: list[dict]) -> dict:
    [row] = [row for row in rows if (row["asset"], row["item"]) == ("stored_data", "stored_data_integrity")]
    return row


def test_dagster_integrity_check_passes_then_fails_with_the_finding(
    instance: dg.DagsterInstance, seeded: pl.DataFrame, opx_home: Path
) -> None:
    assert launch.materialize(settings(), instance, ["daily_outcomes", "pattern_summaries_daily"], ["2025-10-20"]).success
    assert launch.materialize(settings(), instance, ["learning_snapshots_daily"], ["2025-10-20"]).success
    clean = _integrity(launch.run_checklist(settings(), instance, MORNING))
    assert clean["status"] == "PASS"
    assert "1 snapshot versions, 36 outcome partitions, 3 asset partitions" in clean["description"]

    snapshot = next((opx_home / "snapshots").rglob("v1.json"))
    data = bytearray(snapshot.read_bytes())
    data[len(data) // 2] ^= 0x01
    snapshot.write_bytes(bytes(data))
    failed = _integrity(launch.run_checklist(settings(), instance, MORNING))
    assert failed["status"] == "FAIL"
    assert failed["description"].startswith("DATA_CORRUPTION:")
    assert f"- snapshots: {snapshot}:" in failed["description"]
    alerts = [json.loads(line) for line in (opx_home / "alerts.jsonl").read_text().splitlines()]
    [alert] = [a for a in alerts if a["alarm"] == "DATA_CORRUPTION"]
    assert alert["severity"] == "P0" and alert["details"]["source"] == "daily sweep"
    assert alert["details"]["where"] == str(snapshot)
    assert snapshot.read_bytes() == bytes(data)


def test_the_integrity_check_keeps_the_chain_heads_in_the_instance(opx_home: Path) -> None:
    from opx_learning_tests.wiring import location

    defs = dg.Definitions.merge(location(), dg.Definitions(jobs=[
        dg.define_asset_job("integrity_only", selection=dg.AssetSelection.checks_for_assets("stored_data"))]))
    with dg.DagsterInstance.ephemeral() as instance:
        result = defs.get_job_def("integrity_only").execute_in_process(instance=instance)
    [evaluation] = result.get_asset_check_evaluations()
    assert evaluation.passed
    assert evaluation.metadata["chain_heads"].value.startswith("audit@0:")
