"""Issue 4 through the CLI: kill switch versus manual, emergency and scheduled work; concurrent rate limits."""

from __future__ import annotations

import json
import re
import threading

import dagster as dg
import polars as pl
import pytest
from click.testing import CliRunner

from opx_learning.app import launch
from opx_learning.app.manual import begin_manual
from opx_learning.backends import guard_for
from opx_learning.cli.main import cli
from opx_learning.safety.guard import Attempt
from opx_learning.safety.models import AuditRecord, AuditStatus
from opx_learning_tests import wiring
from opx_learning_tests.dagster.conftest import daemon_tick
from opx_learning_tests.wiring import settings

DAY = ["--start", "2025-10-01", "--end", "2025-10-02"]


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def _audit(audit_id: str) -> AuditRecord:
    record = guard_for(wiring.settings()).audit.get(audit_id)
    assert record is not None, audit_id
    return record


@pytest.fixture
def kill_switch_active(dagster_home: object) -> None:
    code, output = _invoke("kill-switch", "disable", "--reason", "bad outcomes feed", "--principal", "ops-admin")
    assert code == 0, output
    code, output = _invoke("kill-switch", "status", "--json")
    assert json.loads(output)["active"] is True


def _refused_audit_id(output: str) -> str:
    match = re.search(r"Audit id (\S+)", output)
    assert match, output
    return match.group(1)


@pytest.mark.parametrize(
    ("extra", "principal", "authority"),
    [
        ([], "alice", "ON_CALL_SRE"),  # (a) a plain manual trigger
        (["--emergency"], "alice", "ON_CALL_SRE"),  # (b) emergency asked by an SRE ...
        (["--emergency", "--principal", "mallory"], "mallory", "HUMAN_OPERATOR"),  # ... or an unknown principal
    ],
)
def test_kill_switch_refuses_manual_trigger_without_override(
    extra: list[str],
    principal: str,
    authority: str,
    instance: dg.DagsterInstance,
    seeded: pl.DataFrame,
    kill_switch_active: None,
) -> None:
    code, output = _invoke("trigger", "extract-patterns", *DAY, *extra)
    assert code == 1
    assert "refused (KILL_SWITCH_ACTIVE)" in output and "bad outcomes feed" in output
    if "--emergency" in extra:
        assert f"EMERGENCY_OVERRIDE principals only; {principal} is {authority}" in output
    record = _audit(_refused_audit_id(output))
    assert (record.status, record.skip_reason, record.trigger_type.value) == (
        AuditStatus.SKIPPED,
        "KILL_SWITCH_ACTIVE",
        "MANUAL",
    )
    assert (record.triggered_by.principal, record.triggered_by.authority.value) == (principal, authority)
    assert record.parameters.get("emergency", False) is ("--emergency" in extra)
    assert instance.get_run_records() == []
    assert instance.get_materialized_partitions(dg.AssetKey("pattern_summaries_daily")) == set()


def test_kill_switch_refusal_as_json(instance: dg.DagsterInstance, kill_switch_active: None) -> None:
    code, output = _invoke("trigger", "calibrate", "--start", "2025-10-01", "--end", "2025-11-01", "--emergency", "--json")
    refusal = json.loads(output)
    assert code == 1
    assert (refusal["allowed"], refusal["skip_reason"], refusal["emergency"]) == (False, "KILL_SWITCH_ACTIVE", False)
    assert "EMERGENCY_OVERRIDE principals only" in refusal["emergency_denied"]
    assert _audit(refusal["audit_id"]).status is AuditStatus.SKIPPED


def test_emergency_override_principal_materializes(
    instance: dg.DagsterInstance, seeded: pl.DataFrame, kill_switch_active: None
) -> None:
    code, output = _invoke("trigger", "extract-patterns", *DAY, "--emergency", "--principal", "ops-admin", "--json")
    assert code == 0, output
    report = json.loads(output[output.index("{\n") :])
    assert report["status"] == "SUCCESS"
    assert report["triggered_by"] == {"type": "EMERGENCY_OVERRIDE", "principal": "ops-admin"}
    assert report["run"]["materialized"] == {"daily_outcomes": 1, "pattern_summaries_daily": 1}
    record = _audit(report["audit_id"])
    assert record.status is AuditStatus.SUCCESS
    assert record.parameters["emergency"] is True and record.results["emergency_bypass"] is True
    assert record.run_id == report["run"]["run_id"]
    assert instance.get_materialized_partitions(dg.AssetKey("pattern_summaries_daily")) == {"2025-10-01"}
    code, output = _invoke("kill-switch", "status", "--json")
    assert json.loads(output)["active"] is True  # the bypass changed nothing for everyone else


def test_scheduled_run_started_under_kill_switch_skips_without_failing(
    instance: dg.DagsterInstance, seeded: pl.DataFrame, kill_switch_active: None
) -> None:
    tick = daemon_tick(instance, "daily_patterns_schedule", 1759363200.0)
    tags = {"dagster/schedule_name": "daily_patterns_schedule", "dagster/tick": str(tick)}
    run = launch.materialize(settings(), instance, ["pattern_summaries_daily"], ["2025-10-01"], tags)
    assert run.success and run.materialized == {} and run.failures == []
    assert run.skipped == {"pattern_summaries_daily": "KILL_SWITCH_ACTIVE"}
    (audit_id,) = run.audit_ids
    record = _audit(audit_id)
    assert (record.status, record.skip_reason, record.trigger_type.value, record.run_id) == (
        AuditStatus.SKIPPED,
        "KILL_SWITCH_ACTIVE",
        "SCHEDULED",
        run.run_id,
    )


def test_fifty_concurrent_calibrate_triggers_accept_exactly_three(dagster_home: object) -> None:
    parameters = {"start_date": "2025-10-01", "end_date": "2025-11-01", "time_window": "MONTHLY"}
    barrier = threading.Barrier(50)
    attempts: list[Attempt] = []
    errors: list[Exception] = []

    def trigger() -> None:
        try:
            barrier.wait()
            attempts.append(begin_manual("CALIBRATION", "alice", parameters, settings=wiring.settings(),
                                          guard=guard_for(wiring.settings())))
        except Exception as error:  # noqa: BLE001 - a thread has no caller: the assertion below reports it
            errors.append(error)

    threads = [threading.Thread(target=trigger) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == [] and len(attempts) == 50
    assert sum(attempt.allowed for attempt in attempts) == 3
    refused = [attempt for attempt in attempts if not attempt.allowed]
    assert {attempt.skip_reason.value for attempt in refused} == {"RATE_LIMIT_EXCEEDED"}
    assert all(attempt.rate_limit.remaining == 0 and attempt.rate_limit.limit == 3 for attempt in refused)
    records = guard_for(wiring.settings()).audit.by_operation("CALIBRATION", limit=None)
    assert len(records) == 50 and sum(record.status is AuditStatus.RUNNING for record in records) == 3

    code, output = _invoke("trigger", "calibrate", "--start", "2025-10-01", "--end", "2025-11-01", "--json")
    refusal = json.loads(output)
    assert code == 1 and refusal["skip_reason"] == "RATE_LIMIT_EXCEEDED" and refusal["rate_limit"]["remaining"] == 0
