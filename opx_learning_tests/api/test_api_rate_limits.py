"""Rate limits over HTTP: 429 with the runbook's body and headers, atomic under 50 concurrent requests."""

from __future__ import annotations

import asyncio
import re

import httpx

from opx_learning_tests.api.conftest import Server, auth

# Windows without outcomes: the accepted runs end quickly (FAILED, INSUFFICIENT_DATA).
EMPTY = {"startDate": "2026-03-01T00:00:00.000Z", "endDate": "2026-03-01T06:00:00.000Z", "emergency": False}


def test_fourth_calibrate_in_an_hour_is_429(api: Server) -> None:
    for remaining in (2, 1, 0):
        response = api.client.post("/learning/calibrate", json=EMPTY, headers=auth("dave-token"))
        assert response.status_code == 202, response.text
        assert (response.headers["X-RateLimit-Limit"], response.headers["X-RateLimit-Remaining"]) == ("3", str(remaining))
    response = api.client.post("/learning/calibrate", json=EMPTY, headers=auth("dave-token"))
    assert response.status_code == 429, response.text
    body = response.json()
    assert body["error"] == "RATE_LIMIT_EXCEEDED"
    match = re.fullmatch(r"Rate limit exceeded\. Retry after (\d+) seconds\.", body["message"])
    assert match and match.group(1) == response.headers["Retry-After"]
    assert 3500 <= int(response.headers["Retry-After"]) <= 3600
    assert (response.headers["X-RateLimit-Limit"], response.headers["X-RateLimit-Remaining"]) == ("3", "0")
    record = api.audit(body["auditId"], token="dave-token")
    assert (record["status"], record["results"]["skip_reason"]) == ("SKIPPED", "RATE_LIMIT_EXCEEDED")
    # Limits are per principal and operation: dave may still snapshot.
    snapshot = api.client.post("/learning/create-snapshot", json={**EMPTY, "snapshotType": "CUSTOM"},
                               headers=auth("dave-token"))
    assert snapshot.status_code == 202 and snapshot.headers["X-RateLimit-Remaining"] == "9"


def test_fifty_concurrent_calibrations_accept_exactly_three(api: Server) -> None:
    async def fire() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=50)
        async with httpx.AsyncClient(base_url=api.url, timeout=60, limits=limits) as client:
            calls = [client.post("/learning/calibrate", json=EMPTY, headers=auth("carol-token")) for _ in range(50)]
            return await asyncio.gather(*calls)

    responses = asyncio.run(fire())
    codes = sorted(response.status_code for response in responses)
    assert codes == [202] * 3 + [429] * 47
    for response in responses:
        if response.status_code == 429:
            assert response.json()["error"] == "RATE_LIMIT_EXCEEDED"
            assert response.headers["X-RateLimit-Remaining"] == "0" and int(response.headers["Retry-After"]) > 0
    accepted = sorted(response.headers["X-RateLimit-Remaining"] for response in responses if response.status_code == 202)
    assert accepted == ["0", "1", "2"]
