"""Kill switch over HTTP with the runbook's bodies, and triggers while it is active (503, emergency bypass)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from opx_learning_tests.api.conftest import ADMIN_ARN, Server, auth

REASON = "Production incident - investigating data quality issues"
JSON = {"Content-Type": "application/json"}
HALF_DAY = {"startDate": "2026-01-05T00:00:00.000Z", "endDate": "2026-01-05T12:00:00.000Z"}


@pytest.fixture
def enabled_afterwards(api: Server) -> Iterator[Server]:
    """Leave the shared server's kill switch enabled whatever the test did."""
    yield api
    api.client.post("/learning/kill-switch/enable", headers=auth("admin-token"))


def test_disable_status_enable_as_in_the_runbook(enabled_afterwards: Server) -> None:
    api = enabled_afterwards
    status = api.client.get("/learning/kill-switch/status")  # no auth required
    assert status.status_code == 200
    store = f"local: {api.settings.state_db}"
    assert status.json() == {"active": False, "enabled": True, "disabledAt": None, "disabledBy": None,
                             "reason": None, "lastModified": status.json()["lastModified"], "store": store}

    response = api.client.post("/learning/kill-switch/disable", json={"reason": REASON},
                               headers={**auth("admin-token"), **JSON})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"status", "message", "auditId", "store"} and body["store"] == store
    assert (body["status"], body["message"]) == ("DISABLED", "Kill switch disabled - all automated operations blocked")
    assert body["auditId"].startswith("KILL_SWITCH_DISABLE#")
    record = api.audit(body["auditId"])
    assert (record["status"], record["triggered_by"]) == ("SUCCESS", {"type": "EMERGENCY_OVERRIDE", "principal": ADMIN_ARN})

    state = api.client.get("/learning/kill-switch/status").json()
    assert set(state) == {"active", "enabled", "disabledAt", "disabledBy", "reason", "lastModified", "store"}
    assert (state["active"], state["enabled"], state["reason"]) == (True, False, REASON)
    assert state["disabledBy"] == {"type": "EMERGENCY_OVERRIDE", "identifier": ADMIN_ARN}
    assert state["disabledAt"] == state["lastModified"] and state["disabledAt"].endswith("Z")

    # The runbook's enable sends a JSON content type and no body.
    response = api.client.post("/learning/kill-switch/enable", headers={**auth("admin-token"), **JSON})
    assert response.status_code == 200, response.text
    assert response.json() | {"auditId": "-"} == {
        "status": "ENABLED", "message": "Kill switch enabled - automated operations allowed", "auditId": "-",
        "store": store}
    assert response.json()["auditId"].startswith("KILL_SWITCH_ENABLE#")
    assert api.client.get("/learning/kill-switch/status").json()["active"] is False


def test_triggers_while_active_503_unless_emergency_override(enabled_afterwards: Server) -> None:
    api = enabled_afterwards
    assert api.client.post("/learning/kill-switch/disable", json={"reason": REASON},
                           headers=auth("admin-token")).status_code == 200
    refused = api.client.post("/learning/extract-patterns", json={**HALF_DAY, "emergency": False},
                              headers=auth("alice-token"))
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"] == "KILL_SWITCH_ACTIVE" and REASON in refused.json()["message"]
    assert "X-RateLimit-Remaining" not in refused.headers  # refused before the rate limit: no slot used
    record = api.audit(refused.json()["auditId"])
    assert (record["status"], record["results"]["skip_reason"]) == ("SKIPPED", "KILL_SWITCH_ACTIVE")

    # `emergency: true` only asks; ON_CALL_SRE is not EMERGENCY_OVERRIDE.
    denied = api.client.post("/learning/extract-patterns", json={**HALF_DAY, "emergency": True},
                             headers=auth("alice-token"))
    assert denied.status_code == 503 and denied.json()["error"] == "KILL_SWITCH_ACTIVE"
    assert "granted to EMERGENCY_OVERRIDE principals only, alice is ON_CALL_SRE" in denied.json()["message"]

    bypass = api.client.post("/learning/extract-patterns", json={**HALF_DAY, "emergency": True},
                             headers=auth("admin-token"))
    assert bypass.status_code == 202, bypass.text
    assert bypass.json()["emergency"] is True and bypass.json()["partitions"]["type"] == "CUSTOM"
    record = api.wait_for(bypass.json()["auditId"])
    assert record["status"] == "SUCCESS", record
    assert record["parameters"]["emergency"] is True and record["results"]["emergency_bypass"] is True
    assert api.client.get("/learning/kill-switch/status").json()["active"] is True  # still active throughout


def test_changes_need_emergency_override(api: Server) -> None:
    # A header or body field cannot raise authority; the refusal is audited.
    response = api.client.post("/learning/kill-switch/disable", json={"reason": REASON},
                               headers={**auth("alice-token"), "X-Authority": "EMERGENCY_OVERRIDE"})
    assert response.status_code == 403, response.text
    body = response.json()
    assert body["error"] == "INSUFFICIENT_AUTHORITY" and "alice has authority ON_CALL_SRE" in body["message"]
    record = api.audit(body["auditId"])
    assert (record["operation_type"], record["status"], record["results"]["skip_reason"]) == (
        "KILL_SWITCH_DISABLE", "SKIPPED", "INSUFFICIENT_AUTHORITY")
    assert api.client.post("/learning/kill-switch/enable", headers=auth("bob-token")).status_code == 403
    assert api.client.get("/learning/kill-switch/status").json()["active"] is False


def test_disable_requires_a_reason(api: Server) -> None:
    for body in ({}, {"reason": "  "}, None):
        response = api.client.post("/learning/kill-switch/disable", json=body, headers=auth("admin-token"))
        assert response.status_code == 400, response.text
        assert response.json() == {"error": "INVALID_REQUEST",
                                   "message": "reason: a reason is required to disable the kill switch (1..1000 characters)"}


def test_enable_accepts_an_empty_object_and_refuses_other_bodies(enabled_afterwards: Server) -> None:
    api = enabled_afterwards
    headers = {**auth("admin-token"), **JSON}
    unknown = api.client.post("/learning/kill-switch/enable", json={"foo": 1}, headers=headers)
    assert unknown.status_code == 400 and unknown.json()["error"] == "INVALID_REQUEST"
    assert "foo" in unknown.json()["message"]
    malformed = api.client.post("/learning/kill-switch/enable", content=b"{", headers=headers)
    assert malformed.status_code == 400
    assert api.client.post("/learning/kill-switch/enable", json={}, headers=headers).status_code == 200


def test_overlong_reason_is_400_naming_the_length(api: Server) -> None:
    response = api.client.post("/learning/kill-switch/disable", json={"reason": "r" * 100_000},
                               headers=auth("admin-token"))
    assert response.status_code == 400
    assert response.json() == {"error": "INVALID_REQUEST",
                               "message": "reason: 100000 characters is too long; at most 1000 characters (after trimming)"}
    assert api.client.get("/learning/kill-switch/status").json()["active"] is False


def test_uninitialised_home_fails_closed_with_the_way_out(server_factory) -> None:
    server = server_factory(initialise_home=False)
    store = f"local: {server.settings.state_db}"
    health = server.client.get("/health")
    assert health.status_code == 200 and health.json()["store"] == store
    status = server.client.get("/learning/kill-switch/status")
    assert status.status_code == 503
    assert status.json()["error"] == "KILL_SWITCH_UNAVAILABLE" and status.json()["store"] == store
    assert "run `opx-learning init`" in status.json()["message"]
    refused = server.client.post("/learning/extract-patterns", json=HALF_DAY, headers=auth("alice-token"))
    assert refused.status_code == 503 and refused.json()["error"] == "KILL_SWITCH_UNAVAILABLE"
    assert not server.settings.state_db.exists()
