"""The server itself: OpenAPI document, health, JSON 404, port already taken, gateway identity header."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

from opx_learning.backends import guard_for
from opx_learning_tests.api.conftest import ADMIN_ARN, Server, auth
from opx_learning_tests.conftest import _free_port

PATHS = {
    "/learning/extract-patterns": "post",
    "/learning/calibrate": "post",
    "/learning/create-snapshot": "post",
    "/learning/kill-switch/disable": "post",
    "/learning/kill-switch/enable": "post",
    "/learning/kill-switch/status": "get",
    "/learning/audit/{audit_id}": "get",
    "/health": "get",
    "/learning/thresholds": "get",
    "/learning/thresholds/proposals": "get",
    "/learning/thresholds/proposals/{proposal_id}/approve": "post",
    "/learning/thresholds/proposals/{proposal_id}/reject": "post",
}
SIGV4 = {"Authorization": "AWS4-HMAC-SHA256 Credential=AKIA/20260125/us-east-1/execute-api/aws4_request"}


def test_openapi_document_lists_every_path(api: Server) -> None:
    document = api.client.get("/openapi.json").json()
    assert {path: next(iter(ops)) for path, ops in document["paths"].items()} == PATHS
    assert "HTTPBearer" in document["components"]["securitySchemes"]
    snapshot = document["components"]["schemas"]["CreateSnapshotRequest"]
    assert snapshot["properties"]["snapshotType"]["enum"] == ["DAILY", "WEEKLY", "MONTHLY", "CUSTOM"]
    assert set(document["paths"]["/learning/calibrate"]["post"]["responses"]) >= {"202", "400", "401", "429", "503"}
    # Invalid bodies are answered 400, never FastAPI's default 422; only triggers are rate limited.
    for path, operations in document["paths"].items():
        for operation in operations.values():
            assert "422" not in operation["responses"], path
    assert "429" not in document["paths"]["/learning/kill-switch/disable"]["post"]["responses"]
    docs = api.client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_health_and_unknown_path(api: Server) -> None:
    health = api.client.get("/health").json()
    assert health["status"] == "ok" and health["backend"] == "local" and set(health["runs"]) == {"running", "queued"}
    assert health["store"] == f"local: {api.settings.state_db}"
    missing = api.client.get("/learning/nothing-here")
    assert (missing.status_code, missing.json()["error"]) == (404, "NOT_FOUND")


def test_port_already_in_use_is_a_clear_error(api: Server) -> None:
    port = str(urlparse(api.url).port)
    result = subprocess.run([sys.executable, "-m", "opx_learning.cli.api", "--port", port],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0
    assert f"--port: {port} on 127.0.0.1 is already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_trusted_gateway_identity_header(server_factory: Callable[..., Server]) -> None:
    server = server_factory({"OPX_TRUSTED_IDENTITY_HEADER": "X-Amzn-Iam-Arn"})
    gateway = {**SIGV4, "X-Amzn-Iam-Arn": ADMIN_ARN}
    response = server.client.post("/learning/kill-switch/disable", json={"reason": "maintenance"}, headers=gateway)
    assert response.status_code == 200, response.text
    assert server.audit(response.json()["auditId"], token="admin-token")["triggered_by"]["principal"] == ADMIN_ARN
    # Authority still comes from the principals file: this role is ON_CALL_SRE.
    sre = {**SIGV4, "X-Amzn-Iam-Arn": "arn:aws:iam::123456789012:user/gateway-sre"}
    assert server.client.post("/learning/kill-switch/enable", headers=sre).status_code == 403
    # Unknown identities are HUMAN_OPERATOR; without the header a SigV4 request is still 401.
    unknown = {**SIGV4, "X-Amzn-Iam-Arn": "arn:aws:iam::123456789012:user/someone"}
    assert server.client.post("/learning/kill-switch/enable", headers=unknown).json()["message"].count("HUMAN_OPERATOR")
    missing = server.client.post("/learning/kill-switch/enable", headers=SIGV4)
    assert missing.status_code == 401 and "X-Amzn-Iam-Arn header is missing" in missing.json()["message"]
    # The scheduler's reserved name cannot be claimed through the header.
    assert server.client.get("/learning/audit/x", headers={"X-Amzn-Iam-Arn": "system"}).status_code == 401
    assert server.client.post("/learning/kill-switch/enable", headers=auth("admin-token")).status_code == 200


def test_a_crashing_worker_leaves_its_record_failed(opx_home: object) -> None:
    import time

    from opx_learning.api.runner import BackgroundRuns
    from opx_learning.app.manual import ManualPlan
    from opx_learning.config import get_settings
    from opx_learning.core.windows import Window
    from opx_learning.safety.models import Principal

    settings = get_settings()
    guard = guard_for(settings)
    window = Window.parse("2026-01-05", "2026-01-06")
    parameters = {"start_date": window.start_iso, "end_date": window.end_iso, "time_window": "DAILY"}
    attempt = guard.begin("PATTERN_EXTRACTION", "MANUAL", Principal("alice"), parameters, rate_limited=True,
                          adoptable=True)
    # An asset that does not exist makes the worker fail before any run adopts the record.
    plan = ManualPlan("PATTERN_EXTRACTION", window, "DAILY", ("no_such_asset",), ("2026-01-05",), parameters)
    runs = BackgroundRuns(settings, max_runs=1, environ=os.environ)
    runs.submit(plan, attempt.audit_id, "alice", attempt.adoption_token)
    deadline = time.monotonic() + 60
    while runs.counts() != {"running": 0, "queued": 0} and time.monotonic() < deadline:
        time.sleep(0.2)
    record = guard.audit.get(attempt.audit_id)
    assert record is not None and record.status.value == "FAILED"
    assert (record.error_message or "").startswith("ValueError: no job materializes exactly no_such_asset")
    assert (settings.home / "api" / "runs" / f"{attempt.audit_id.replace('#', '_')}.log").exists()


def test_malformed_settings_stop_the_server_at_startup(tmp_path: Path) -> None:
    env = {**os.environ, "OPX_HOME": str(tmp_path), "OPX_RATE_LIMITS": "CALIBRATION=abc"}
    result = subprocess.run(
        [sys.executable, "-m", "opx_learning.cli.api", "--port", str(_free_port())],
        env=env, capture_output=True, text=True, check=False, timeout=60,
    )
    assert result.returncode == 2
    assert "OPX_RATE_LIMITS: 'CALIBRATION=abc'" in result.stderr and "Traceback" not in result.stderr
