"""Manual triggers over HTTP: the runbook's curl bodies are accepted (202) and their runs complete."""

from __future__ import annotations

import time
from collections.abc import Callable

import polars as pl
import pytest

from opx_learning.core.windows import Window
from opx_learning.stores.outcomes import outcome_store
from opx_learning_tests.api.conftest import Server, auth

JANUARY = {"startDate": "2026-01-01T00:00:00.000Z", "endDate": "2026-01-31T23:59:59.999Z"}
EXTRACT = {"service": "order-service", **JANUARY, "emergency": False}
CALIBRATE = {**JANUARY, "emergency": False}
SNAPSHOT = {"snapshotType": "CUSTOM", **JANUARY, "emergency": False}


def _accepted(server: Server, path: str, body: dict, token: str, limit: int, remaining: int) -> str:
    response = server.client.post(path, json=body, headers={**auth(token), "Content-Type": "application/json"})
    assert response.status_code == 202, response.text
    data = response.json()
    assert data["status"] == "ACCEPTED" and data["auditId"]
    assert response.headers["X-RateLimit-Limit"] == str(limit)
    assert response.headers["X-RateLimit-Remaining"] == str(remaining)
    assert data["window"] == {"startDate": "2026-01-01T00:00:00.000Z", "endDate": "2026-02-01T00:00:00.000Z"}
    return data["auditId"]


def test_runbook_bodies_are_accepted_and_their_runs_complete(api: Server) -> None:
    january = outcome_store(api.settings).read(Window.parse("2026-01-01", "2026-02-01"))
    scored = january.filter(pl.col("predicted_confidence").is_not_null()).height
    assert scored >= 30  # enough for a calibration

    extract_id = _accepted(api, "/learning/extract-patterns", EXTRACT, "alice-token", 5, 4)
    assert extract_id.startswith("PATTERN_EXTRACTION#")
    record = api.wait_for(extract_id)
    assert record["status"] == "SUCCESS", record
    assert (record["operation_type"], record["trigger_type"]) == ("PATTERN_EXTRACTION", "MANUAL")
    assert record["triggered_by"] == {"type": "ON_CALL_SRE", "principal": "alice"}
    assert record["parameters"] == {"start_date": "2026-01-01T00:00:00.000Z", "end_date": "2026-02-01T00:00:00.000Z",
                                    "service": "order-service", "time_window": "DAILY"}
    assert record["results"]["partitions"] == 31 and record["results"]["total_incidents"] == january.height
    assert record["run_id"] and record["end_time"]

    calibrate_id = _accepted(api, "/learning/calibrate", CALIBRATE, "alice-token", 3, 2)
    snapshot_id = _accepted(api, "/learning/create-snapshot", SNAPSHOT, "alice-token", 10, 9)
    calibration = api.wait_for(calibrate_id)
    assert calibration["status"] == "SUCCESS", calibration
    assert calibration["parameters"]["time_window"] == "MONTHLY"
    assert calibration["results"]["outcome_count"] == scored
    snapshot = api.wait_for(snapshot_id)
    assert snapshot["status"] == "SUCCESS", snapshot
    assert snapshot["parameters"]["snapshot_type"] == "CUSTOM"


@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [
        ("/learning/extract-patterns", {"startDate": "2026-13-01", "endDate": "2026-01-31"}, "startDate: "),
        ("/learning/calibrate", {"startDate": "2026-01-31", "endDate": "2026-01-01"}, "endDate: 2026-01-01T00:00:00.000Z"),
        ("/learning/create-snapshot", {**SNAPSHOT, "snapshotType": "HOURLY"}, "snapshotType: 'HOURLY' is not one of"),
        ("/learning/extract-patterns", {**EXTRACT, "service": "no-such-service"},
         "service: 'no-such-service' has no outcomes in 2026-01-01T00:00:00.000Z..2026-02-01T00:00:00.000Z"),
        ("/learning/calibrate", {"startDate": "2026-01-01"}, "endDate: required"),
        ("/learning/create-snapshot", {"startDate": "2026-01-01", "endDate": "2026-01-02"}, "snapshotType: required"),
        ("/learning/calibrate", {**CALIBRATE, "authority": "EMERGENCY_OVERRIDE"},
         "authority: 'EMERGENCY_OVERRIDE' is not accepted"),
        ("/learning/calibrate", {**CALIBRATE, "emergency": "sometimes"}, "emergency: 'sometimes' is invalid"),
        ("/learning/calibrate", {**CALIBRATE, "timeWindow": "MONTHLY", "startDate": "2026-01-02"},
         "startDate/endDate: 2026-01-02T00:00:00.000Z..2026-02-01T00:00:00.000Z does not cover whole"),
        ("/learning/create-snapshot", {**SNAPSHOT, "snapshotType": "weekly", "startDate": "2026-01-04",
                                       "endDate": "2026-01-11"}, "partitions of pattern summaries are missing"),
    ],
)
def test_invalid_bodies_are_400_naming_field_and_value(api: Server, path: str, body: dict, expected: str) -> None:
    response = api.client.post(path, json=body, headers=auth("bob-token"))
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "INVALID_REQUEST"
    assert expected in response.json()["message"]


def test_malformed_json_and_missing_body_are_400(api: Server) -> None:
    headers = {**auth("bob-token"), "Content-Type": "application/json"}
    response = api.client.post("/learning/calibrate", content=b"{bad", headers=headers)
    assert (response.status_code, response.json()["error"]) == (400, "INVALID_REQUEST")
    assert response.json()["message"].startswith("body: not valid JSON")
    response = api.client.post("/learning/calibrate", headers=headers)
    assert response.json() == {"error": "INVALID_REQUEST", "message": "body: a JSON object is required"}


def test_invalid_requests_cost_no_rate_limit_slot(api: Server) -> None:
    for _ in range(4):
        assert api.client.post("/learning/calibrate", json={"startDate": "x", "endDate": "y"},
                               headers=auth("bob-token")).status_code == 400
    body = {"startDate": "2026-02-01", "endDate": "2026-02-01T06:00:00Z"}
    response = api.client.post("/learning/calibrate", json=body, headers=auth("bob-token"))
    assert response.status_code == 202, response.text
    assert response.headers["X-RateLimit-Remaining"] == "2"
    key = "2026-02-01..2026-02-01T06:00:00.000Z"
    assert response.json()["partitions"] == {"type": "CUSTOM", "first": key, "last": key, "count": 1}
    assert "not whole calendar months" in response.json()["note"]
    # No outcomes in that window: the background run fails with INSUFFICIENT_DATA, recorded by the run itself.
    record = api.wait_for(response.json()["auditId"])
    assert record["status"] == "FAILED" and "INSUFFICIENT_DATA" in (record["error_message"] or "") + str(record["results"])


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, "missing credentials"),
        ({"Authorization": "Bearer wrong-token"}, "matches no principal"),
        ({"Authorization": "AWS4-HMAC-SHA256 Credential=AKIA/20260125/us-east-1/execute-api/aws4_request"},
         "OPX_TRUSTED_IDENTITY_HEADER"),
        ({"Authorization": "Basic YWxpY2U6eA=="}, "unsupported Authorization scheme 'Basic'"),
        # The gateway identity header is ignored unless the server is configured to trust it.
        ({"X-Amzn-Iam-Arn": "arn:aws:iam::123456789012:user/ops-admin"}, "missing credentials"),
    ],
)
def test_unauthenticated_is_401(api: Server, headers: dict, expected: str) -> None:
    response = api.client.post("/learning/calibrate", json=CALIBRATE, headers=headers)
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "UNAUTHENTICATED" and expected in response.json()["message"]
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert api.client.get("/learning/audit/CALIBRATION%23x", headers=headers).status_code == 401


def test_unknown_audit_id_is_404(api: Server) -> None:
    response = api.client.get("/learning/audit/CALIBRATION%23nope", headers=auth("bob-token"))
    assert response.status_code == 404 and response.json()["error"] == "NOT_FOUND"
    assert "'CALIBRATION#nope'" in response.json()["message"]


def test_with_launch_location_a_trigger_runs_through_the_code_location(
    server_factory: Callable[..., Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    import dagster as dg

    server = server_factory({"OPX_LAUNCH": "location"})  # no daemon: the local coordinator launches it at once
    audit_id = _accepted(server, "/learning/extract-patterns", EXTRACT, "alice-token", 5, 4)
    record = server.wait_for(audit_id, timeout=180)
    assert record["status"] == "SUCCESS", record
    assert record["triggered_by"] == {"type": "ON_CALL_SRE", "principal": "alice"}
    dagster_home = server.settings.dagster_home_dir
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        # The run closes its audit record in its last step, just before Dagster records RUN_SUCCESS.
        deadline = time.monotonic() + 60
        while (run := instance.get_run_by_id(record["run_id"])) is not None and not run.is_finished:
            assert time.monotonic() < deadline, f"run {run.run_id} still {run.status} 60 s after its audit record closed"
            time.sleep(0.2)
        assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
        # The origin the UI's timeline, job page and Re-execute need.
        assert run.remote_job_origin is not None
        assert run.remote_job_origin.location_name == "opx_learning.definitions"
        assert run.job_name == "daily_patterns_job" and run.tags["opx/audit_id"] == audit_id
