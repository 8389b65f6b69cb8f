"""A real `opx-learning api` server (uvicorn in a subprocess on a free loopback port) over a temp OPX_HOME."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from opx_learning.config import Settings, get_settings
from opx_learning.core.synthetic import generate_outcomes
from opx_learning.safety.state import initialise
from opx_learning.stores.outcomes import outcome_store
from opx_learning_tests.conftest import _free_port
from opx_learning_tests.processes import spawn, stop

ADMIN_ARN = "arn:aws:iam::123456789012:user/ops-admin"
TOKENS = {
    ADMIN_ARN: ("EMERGENCY_OVERRIDE", "admin-token"),
    "alice": ("ON_CALL_SRE", "alice-token"),
    "bob": ("HUMAN_OPERATOR", "bob-token"),
    "carol": ("HUMAN_OPERATOR", "carol-token"),
    "dave": ("HUMAN_OPERATOR", "dave-token"),
}
SERVICES = ["order-service", "payment-service"]


def auth(token: str) -> dict[str, str]:
    """Bearer authorization header."""
    return {"Authorization": f"Bearer {token}"}


def write_principals(path: Path) -> Path:
    """A principals file granting the authorities of TOKENS, with the SHA-256 of each token."""
    lines = ["principals:"]
    for name, (authority, token) in TOKENS.items():
        lines += [f'  "{name}":', f"    authority: {authority}",
                  f'    token_sha256: "{hashlib.sha256(token.encode()).hexdigest()}"']
    lines += ['  "arn:aws:iam::123456789012:user/gateway-sre":', "    authority: ON_CALL_SRE"]
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class Server:
    """A running API server: base URL, its settings and an httpx client."""

    url: str
    settings: Settings
    client: httpx.Client
    process: subprocess.Popen[bytes]
    log: Path

    def audit(self, audit_id: str, token: str = "alice-token") -> dict:
        """GET the audit record."""
        response = self.client.get(f"/learning/audit/{quote(audit_id, safe='')}", headers=auth(token))
        assert response.status_code == 200, response.text
        return response.json()

    def wait_for(self, audit_id: str, timeout: float = 60) -> dict:
        """Poll the audit record until it leaves RUNNING."""
        deadline = time.monotonic() + timeout
        while True:
            record = self.audit(audit_id)
            if record["status"] != "RUNNING" or time.monotonic() > deadline:
                return record
            time.sleep(0.3)

    def idle(self, timeout: float = 90) -> None:
        """Wait until no background run is running or queued."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = self.client.get("/health").json()["runs"]
            if runs == {"running": 0, "queued": 0}:
                return
            time.sleep(0.3)


def start_server(tmp: Path, extra_env: dict[str, str] | None = None, *, initialise_home: bool = True,
                 prefix: list[str] | None = None) -> Server:
    """Initialise the home, seed January 2026 and start `python -m opx_learning.cli.api` on a free port.

    `prefix`: a command the server runs under (e.g. `permissions.restricted()`).
    """
    home, dagster_home = tmp / "opx", tmp / "dagster_home"
    home.mkdir(parents=True)
    env = {
        **os.environ,
        "OPX_BACKEND": "local",
        "OPX_HOME": str(home),
        "DAGSTER_HOME": str(dagster_home),
        "OPX_PRINCIPALS": str(write_principals(tmp / "principals.yaml")),
        "OPX_API_MAX_RUNS": "3",
        **(extra_env or {}),
    }
    if "OPX_TRUSTED_IDENTITY_HEADER" not in (extra_env or {}):
        env.pop("OPX_TRUSTED_IDENTITY_HEADER", None)
    settings = get_settings(env)
    if initialise_home:
        initialise(settings)
        # Stored objects are recorded in the state database's manifest, so only an initialised home holds outcomes.
        outcome_store(settings).write(
            generate_outcomes("2026-01-01", "2026-02-01", per_day=4, services=SERVICES, seed=1, noisy_service=None)
        )
    port = _free_port()
    log = tmp / "server.log"
    with open(log, "wb") as out:
        process = spawn([*(prefix or []), sys.executable, "-m", "opx_learning.cli.api", "--port", str(port)],
                        env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    client = httpx.Client(base_url=url, timeout=30)
    deadline = time.monotonic() + 30
    while True:
        try:
            client.get("/health").raise_for_status()
            break
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the API server did not start: {log.read_text()}") from None
            time.sleep(0.2)
    return Server(url, settings, client, process, log)


def stop_server(server: Server) -> None:
    """Let background runs finish, then stop the server."""
    try:
        server.idle()
    finally:
        server.client.close()
        stop(server.process, timeout=20)


@pytest.fixture(scope="session")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server per test process, shared by the API tests (each test uses its own principals or restores state)."""
    server = start_server(tmp_path_factory.mktemp("api"))
    try:
        yield server
    finally:
        stop_server(server)


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start extra servers (e.g. with a trusted identity header); stopped after the test."""
    started: list[Server] = []

    def make(extra_env: dict[str, str] | None = None, *, initialise_home: bool = True,
             prefix: list[str] | None = None) -> Server:
        server = start_server(tmp_path / f"server{len(started)}", extra_env, initialise_home=initialise_home,
                              prefix=prefix)
        started.append(server)
        return server

    yield make
    for server in started:
        stop_server(server)
