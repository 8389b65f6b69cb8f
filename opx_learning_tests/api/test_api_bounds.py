"""Over HTTP: out-of-range dates are 400 (never 500), repeated credential headers are 401."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from opx_learning_tests.api.conftest import ADMIN_ARN, Server, auth

OUTSIDE = "is outside the supported range 1970-01-01 (inclusive) to 2200-01-01 (exclusive) UTC"
SIGV4 = ("Authorization", "AWS4-HMAC-SHA256 Credential=AKIA/20260125/us-east-1/execute-api/aws4_request")


@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [
        ("/learning/calibrate", {"startDate": "2026-01-01T00:00:00.000Z", "endDate": "9999-12-31T23:59:59.999Z"},
         f"endDate: '9999-12-31T23:59:59.999Z' {OUTSIDE}"),
        ("/learning/calibrate", {"startDate": "0001-01-02", "endDate": "2026-01-01"}, f"startDate: '0001-01-02' {OUTSIDE}"),
        ("/learning/extract-patterns", {"startDate": "2026-01-01", "endDate": "9999-12-31T23:59:59.999Z"},
         f"endDate: '9999-12-31T23:59:59.999Z' {OUTSIDE}"),
        ("/learning/create-snapshot", {"startDate": "1000-01-01", "endDate": "9000-01-01", "snapshotType": "CUSTOM"},
         f"startDate: '1000-01-01' {OUTSIDE}"),
        ("/learning/create-snapshot", {"startDate": "2026-01-01", "endDate": "9000-01-01", "snapshotType": "custom"},
         f"endDate: '9000-01-01' {OUTSIDE}"),
        ("/learning/calibrate", {"startDate": "0001-01-01T00:00:00+01:00", "endDate": "2026-01-01"},
         f"startDate: '0001-01-01T00:00:00+01:00' {OUTSIDE}"),
    ],
)
def test_out_of_range_dates_are_400(api: Server, path: str, body: dict, expected: str) -> None:
    response = api.client.post(path, json=body, headers=auth("carol-token"))
    assert response.status_code == 400, response.text
    assert response.json() == {"error": "INVALID_REQUEST", "message": expected}
    # Refused before the rate limit: no slot used, no audit record.
    assert "X-RateLimit-Remaining" not in response.headers


def test_repeated_trusted_identity_header_is_401(server_factory: Callable[..., Server]) -> None:
    server = server_factory({"OPX_TRUSTED_IDENTITY_HEADER": "X-Amzn-Iam-Arn"})
    someone = "arn:aws:iam::123456789012:user/someone"
    for values in ([ADMIN_ARN, someone], [someone, ADMIN_ARN], [ADMIN_ARN, ADMIN_ARN]):
        headers = [SIGV4, *(("X-Amzn-Iam-Arn", value) for value in values)]
        response = server.client.post("/learning/kill-switch/disable", json={"reason": "x"}, headers=headers)
        assert response.status_code == 401, response.text
        assert response.json() == {"error": "UNAUTHENTICATED",
                                   "message": "X-Amzn-Iam-Arn header: sent 2 times; send it exactly once"}
    assert server.client.get("/learning/kill-switch/status").json()["active"] is False
    # Sent once, the header still authenticates.
    once = [SIGV4, ("X-Amzn-Iam-Arn", ADMIN_ARN)]
    assert server.client.get("/learning/audit/CALIBRATION%23none", headers=once).status_code == 404


def test_repeated_authorization_header_is_401(api: Server) -> None:
    headers = [("Authorization", "Bearer bob-token"), ("Authorization", "Bearer admin-token")]
    response = api.client.post("/learning/kill-switch/disable", json={"reason": "x"}, headers=headers)
    assert response.status_code == 401, response.text
    assert "Authorization header: sent 2 times" in response.json()["message"]
