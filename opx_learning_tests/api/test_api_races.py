"""Concurrent REST triggers on a fresh Dagster home all run: the instance is initialised once, at server start."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from opx_learning.core.synthetic import generate_outcomes
from opx_learning_tests.api.conftest import SERVICES, Server, auth

CALIBRATE = {"startDate": "2026-01-01T00:00:00.000Z", "endDate": "2026-01-31T23:59:59.999Z"}


def test_four_simultaneous_calibrations_on_a_fresh_dagster_home_all_succeed(
    server_factory: Callable[..., Server],
) -> None:
    server = server_factory({"OPX_API_MAX_RUNS": "4"})
    tokens = ["alice-token", "bob-token", "carol-token", "dave-token"]  # 3 calibrations per hour per principal

    def post(token: str) -> dict:
        response = server.client.post("/learning/calibrate", json=CALIBRATE, headers=auth(token))
        assert response.status_code == 202, response.text
        return response.json()

    with ThreadPoolExecutor(len(tokens)) as pool:
        accepted = list(pool.map(post, tokens))
    records = [server.wait_for(body["auditId"], timeout=240) for body in accepted]
    # The outcomes the server fixture seeded, counted here: those with a predicted confidence.
    seeded = generate_outcomes("2026-01-01", "2026-02-01", per_day=4, services=SERVICES, seed=1, noisy_service=None)
    for record in records:
        assert record["status"] == "SUCCESS", (record["error_message"], record["results"])
        assert record["results"]["outcome_count"] == seeded["predicted_confidence"].is_not_null().sum()
    logs = "".join((server.settings.home / "api" / "runs" / f"{b['auditId'].replace('#', '_')}.log").read_text()
                   for b in accepted)
    assert "already exists" not in logs and "Traceback" not in logs
