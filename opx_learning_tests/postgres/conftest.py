"""A real PostgreSQL server, and Dagster's production processes on it, for the scale-out tests.

The server comes from the machine's PostgreSQL binaries (Debian's `postgresql` package,
which `.ci/run` installs when missing): `initdb` into a temporary directory, then
`postgres` on a free loopback port with its unix socket in that directory, run as the
`postgres` (else `nobody`) user when the tests run as root, since PostgreSQL refuses
to run as root. Every process is started and stopped through `opx_learning_tests.processes`.
"""

from __future__ import annotations

import glob
import hashlib
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from opx_learning.deploy import GRPC_WORKSPACE_YAML, LOCAL_PRODUCTION_DAGSTER_YAML
from opx_learning_tests.conftest import _free_port
from opx_learning_tests.graphql import graphql
from opx_learning_tests.processes import spawn, stop

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
REST_TOKEN = "postgres-rest-token"  # the REST caller's bearer token
PRINCIPALS_YAML = f"""\
principals:
  ops-admin:
    authority: EMERGENCY_OVERRIDE
  alice:
    authority: ON_CALL_SRE
  rest-caller:
    authority: ON_CALL_SRE
    token_sha256: "{hashlib.sha256(REST_TOKEN.encode()).hexdigest()}"
"""


def postgres_bin_dir() -> Path | None:
    """The newest `/usr/lib/postgresql/<version>/bin`, else the directory of `initdb` on PATH."""
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    if found:
        newest = max(
            found,
            key=lambda path: int(re.sub(r"\D", "", Path(path).parents[1].name) or 0),
        )
        return Path(newest).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def _unprivileged() -> tuple[list[str], pwd.struct_passwd | None]:
    """The command prefix (and user) that drops root for PostgreSQL; nothing when not root."""
    if os.geteuid() != 0:
        return [], None
    for name in ("postgres", "nobody"):
        try:
            user = pwd.getpwnam(name)
        except KeyError:
            continue
        return [
            "setpriv",
            f"--reuid={user.pw_uid}",
            f"--regid={user.pw_gid}",
            "--clear-groups",
            "--",
        ], user
    raise RuntimeError("running as root and neither a 'postgres' nor a 'nobody' user exists to run PostgreSQL")


@dataclass(frozen=True)
class PostgresServer:
    """Where the test server listens and how to log in."""

    host: str
    port: int
    user: str
    password: str
    db: str

    def dagster_env(self) -> dict[str, str]:
        """The documented variables of the deploy files' `postgres_db` section."""
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USERNAME": self.user,
            "DAGSTER_PG_PASSWORD": self.password,
            "DAGSTER_PG_DB": self.db,
        }

    def connect(self) -> Any:
        """A psycopg2 connection to the test database (autocommit)."""
        conn = psycopg2.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=self.db,
            connect_timeout=5,
        )
        conn.autocommit = True
        return conn


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server of its own: initdb'd into a temporary directory, on a free loopback port."""
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        pytest.fail(
            "no PostgreSQL server binaries (initdb): install Debian's package with "
            "`apt-get install -y postgresql` (.ci/run does) or put initdb on PATH"
        )
    prefix, user = _unprivileged()
    base = Path(tempfile.mkdtemp(prefix="opx-pg-"))
    data, sockets = base / "data", base / "run"
    sockets.mkdir()
    password = "opx-test-secret"
    (base / "pwfile").write_text(password + "\n")
    if user is not None:
        for path in (base, sockets, base / "pwfile"):
            os.chown(path, user.pw_uid, user.pw_gid)
    server = PostgresServer("127.0.0.1", _free_port(), "opx", password, "dagster_test")
    subprocess.run(
        [*prefix, str(bin_dir / "initdb"), "-D", str(data), "-U", server.user, f"--pwfile={base / 'pwfile'}",
         "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"],
        check=True, capture_output=True, cwd=base,
    )  # fmt: skip
    log = open(base / "postgres.log", "w")  # noqa: SIM115 - closed below
    process = spawn(
        [*prefix, str(bin_dir / "postgres"), "-D", str(data), "-h", server.host, "-p", str(server.port),
         "-k", str(sockets), "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
         "-c", "max_connections=200"],
        stdout=log, stderr=subprocess.STDOUT, cwd=base,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                admin = psycopg2.connect(
                    host=server.host,
                    port=server.port,
                    user=server.user,
                    password=password,
                    dbname="postgres",
                )
                break
            except psycopg2.OperationalError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"PostgreSQL did not start: {(base / 'postgres.log').read_text()}") from None
                time.sleep(0.2)
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {server.db}")
        admin.close()
        yield server
    finally:
        stop(process)
        log.close()
        shutil.rmtree(base, ignore_errors=True)


def wait_for(
    predicate: Callable[[], Any],
    timeout: float,
    what: str,
    interval: float = 0.5,
    details: Callable[[], str] | None = None,
) -> Any:
    """Poll `predicate` until it returns something truthy; fail naming `what` (and `details()`) after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except OSError:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{details() if details else ''}")
        time.sleep(interval)


@dataclass
class Stack:
    """Dagster's production processes on the test server: gRPC code server, webserver, daemon."""

    base: Path
    env: dict[str, str]
    url: str
    server: PostgresServer
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def opx_home(self) -> Path:
        """The OPX_HOME shared by every process of the stack."""
        return Path(self.env["OPX_HOME"])

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """POST a GraphQL document to the webserver; fail on GraphQL errors."""
        return graphql(self.url, query, variables)

    def logs(self) -> str:
        """The tail of every process log, for failure messages."""
        return "\n".join(f"--- {log.name}\n{log.read_text()[-3000:]}" for log in sorted(self.base.glob("*.log")))


def _start(stack: Stack, name: str, args: list[str]) -> subprocess.Popen:
    log = open(stack.base / f"{name}.log", "w")  # noqa: SIM115 - the child holds it; closed when the stack stops
    process = spawn(args, cwd=ROOT, env=stack.env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    stack.processes[name] = process
    return process


def _grpc_serving(stack: Stack) -> bool:
    host, port = stack.env["OPX_GRPC_HOST"], stack.env["OPX_GRPC_PORT"]
    check = [
        str(BIN / "dagster"),
        "api",
        "grpc-health-check",
        "--host",
        host,
        "--port",
        port,
    ]
    return subprocess.run(check, check=False, env=stack.env, capture_output=True, timeout=30).returncode == 0


def _daemon_live(stack: Stack) -> bool:
    check = [str(BIN / "dagster-daemon"), "liveness-check"]
    return subprocess.run(check, check=False, env=stack.env, capture_output=True, timeout=60).returncode == 0


@pytest.fixture(scope="module")
def postgres_stack(postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The local production instance (dagster.local-production.yaml + the DAGSTER_PG_* variables) on the test
    server, with `dagster api grpc`, `dagster-webserver` and `dagster-daemon run` as separate processes.

    Every process gets the same environment; the test process itself keeps its own and
    reaches the stack through GraphQL, the safety settings of `stack.env` and SQL.
    """
    base = tmp_path_factory.mktemp("postgres-stack")
    dagster_home, opx_home = base / "dagster_home", base / "opx"
    dagster_home.mkdir()
    opx_home.mkdir()
    shutil.copy(LOCAL_PRODUCTION_DAGSTER_YAML, dagster_home / "dagster.yaml")
    (base / "principals.yaml").write_text(PRINCIPALS_YAML)
    web_port, grpc_port = _free_port(), _free_port()
    env = {
        **os.environ,
        **postgres_server.dagster_env(),
        "DAGSTER_HOME": str(dagster_home),
        "OPX_HOME": str(opx_home),
        "OPX_BACKEND": "local",
        "OPX_PRINCIPALS": str(base / "principals.yaml"),
        "OPX_PRINCIPAL": "alice",
        "OPX_GRPC_HOST": "127.0.0.1",
        "OPX_GRPC_PORT": str(grpc_port),
        "DAGSTER_EVENT_BATCH_SIZE": "10000",  # as docs/deploy.md sets it for a Postgres instance
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    stack = Stack(base, env, f"http://127.0.0.1:{web_port}", postgres_server)
    _initialise_opx_home(env)
    workspace = str(GRPC_WORKSPACE_YAML)
    try:
        _start(stack, "grpc", [str(BIN / "dagster"), "api", "grpc", "--module-name", "opx_learning.definitions",
                               "--host", "127.0.0.1", "--port", str(grpc_port)])  # fmt: skip
        wait_for(
            lambda: _grpc_serving(stack),
            90,
            "the gRPC code server",
            details=stack.logs,
            interval=1,
        )
        _start(stack, "webserver", [str(BIN / "dagster-webserver"), "-w", workspace, "-h", "127.0.0.1",
                                    "-p", str(web_port)])  # fmt: skip
        _start(stack, "daemon", [str(BIN / "dagster-daemon"), "run", "-w", workspace])
        wait_for(
            lambda: urllib.request.urlopen(f"{stack.url}/server_info", timeout=5).status == 200,
            90,
            "the webserver",
            details=stack.logs,
        )
        wait_for(
            lambda: _daemon_live(stack),
            90,
            "the daemon's heartbeats",
            details=stack.logs,
            interval=1,
        )
        yield stack
    finally:
        # The daemon first, so it launches nothing on a code server that is going away.
        for name in ("daemon", "webserver", "grpc"):
            if name in stack.processes:
                stop(stack.processes[name])


def _initialise_opx_home(env: dict[str, str]) -> None:
    """Create the home's safety state with `opx-learning init`, as an operator would."""
    subprocess.run([str(BIN / "opx-learning"), "init"], env=env, check=True, capture_output=True, timeout=60)
