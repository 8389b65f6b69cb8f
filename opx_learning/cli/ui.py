"""`opx-learning ui`: the Dagster UI (`dagster dev`) on the instance the CLI, the REST API and the demo use."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time

import click

from opx_learning.cli.environment import command_settings, use_dagster_home

STOP_GRACE_S = 8.0


@click.command("ui")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface the webserver listens on.")
@click.option("--port", type=click.IntRange(1, 65535), default=3000, show_default=True, help="Webserver port.")
def ui(host: str, port: int) -> None:
    """Start `dagster dev` (webserver + daemon) on DAGSTER_HOME, else `$OPX_HOME/dagster_home`, the demo's instance.

    The code location is loaded as the module `opx_learning.definitions`, so it works from any
    directory. Ctrl-C or SIGTERM stops it within 10 s, every child process included (webserver,
    daemon, code servers): `dagster dev` gets SIGTERM, and whatever is left of its process group
    after 8 s is killed (then the exit code is 0: stopped as asked). Set `OPX_UI_URL` when the UI is reached at another address, so the
    links the other commands print point at it.
    """
    settings = command_settings()
    home = use_dagster_home(settings)
    dagster = shutil.which("dagster") or ""
    command = [dagster, "dev"] if dagster else [sys.executable, "-m", "dagster", "dev"]
    command += ["-m", "opx_learning.definitions", "--host", host, "--port", str(port)]
    click.echo(f"Dagster UI on DAGSTER_HOME={home} (OPX_HOME={settings.home}, store {settings.store_description})")
    click.echo(f"  http://{host}:{port}   (Ctrl-C stops it)")
    sys.stdout.flush()
    # Its own process group, so stopping it reaches every process `dagster dev` starts.
    child = subprocess.Popen(command, env={**os.environ, "DAGSTER_HOME": str(home)}, start_new_session=True)
    signalled: list[float] = []

    def stop(_signum: int, _frame: object) -> None:
        if not signalled:
            click.echo("opx-learning ui: stopping dagster dev and its processes ...", err=True)
            signalled.append(time.monotonic())
        # dagster dev stops its webserver, daemon and code servers itself on SIGTERM.
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signal.SIGTERM)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop)
    code, ended = None, None
    # Wait for dagster dev and every process of its group; after a stop (or its own end), at most the grace period.
    while True:
        if code is None and (code := child.poll()) is not None:
            ended = time.monotonic()
        if code is not None and not _group_alive(child.pid):
            break
        since = signalled[0] if signalled else ended
        if since is not None and time.monotonic() - since > STOP_GRACE_S:
            break
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)
    if code is None:
        code = child.wait()
    raise SystemExit(0 if signalled else code)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
