"""Shared fixtures: an isolated OPX_HOME / DAGSTER_HOME per test."""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from opx_learning_tests.processes import leftovers


@pytest.fixture
def opx_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh local-backend home (and Dagster home) for one test, initialised as `opx-learning init` does."""
    home = tmp_path / "opx"
    home.mkdir()
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    monkeypatch.setenv("OPX_HOME", str(home))
    monkeypatch.setenv("OPX_BACKEND", "local")
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    monkeypatch.delenv("OPX_PRINCIPALS", raising=False)
    from opx_learning.safety.state import initialise
    from opx_learning_tests.wiring import settings

    initialise(settings())
    return home


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's HTTP server on a free loopback port, shared by the test session."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_env(moto_endpoint: str, opx_home: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point boto3 (and the aws backend) at a freshly reset moto server."""
    urllib.request.urlopen(
        urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST")
    ).close()
    for name, value in {
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return moto_endpoint


@pytest.fixture(scope="session", autouse=True)
def no_process_left_behind() -> Iterator[None]:
    """After the session, no process a test started (servers, daemons, code servers) is still alive."""
    yield
    alive = leftovers()
    assert not alive, f"processes started by tests outlived them (now killed): {alive}"


def pytest_configure(config: pytest.Config) -> None:
    """Silence Dagster's notices about its own beta/preview APIs; group `xdist_group` tests on one worker."""
    for category in ("BetaWarning", "PreviewWarning", "SupersessionWarning"):
        config.addinivalue_line("filterwarnings", f"ignore::dagster.{category}")
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:dagster.*")
    # Under `-n`, tests marked `xdist_group` share a worker (the Postgres stack starts once):
    # the controller schedules by group, and its workers name the groups in their node ids.
    if getattr(config.option, "dist", "no") == "load":
        config.option.dist = "loadgroup"
    elif getattr(config, "workerinput", {}).get("opx_loadgroup"):
        config.option.loadgroup = True


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """Tell each xdist worker whether the controller schedules by `xdist_group`."""
    node.workerinput["opx_loadgroup"] = node.config.option.dist == "loadgroup"
