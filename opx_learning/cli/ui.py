"""`opx-learning ui`: the Dagster UI (`dagster dev`) on the instance the CLI, the REST API and the demo use."""

from __future__ import annotations

import os
import shutil
import sys

import click

from opx_learning.cli.environment import command_settings, use_dagster_home


@click.command("ui")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface the webserver listens on.")
@click.option("--port", type=click.IntRange(1, 65535), default=3000, show_default=True, help="Webserver port.")
def ui(host: str, port: int) -> None:
    """Start `dagster dev` (webserver + daemon) on DAGSTER_HOME, else `$OPX_HOME/dagster_home`, the demo's instance.

    The code location is loaded as the module `opx_learning.definitions`, so it works from any
    directory; stop it with Ctrl-C. Set `OPX_UI_URL` when the UI is reached at another address,
    so the links the other commands print point at it.
    """
    settings = command_settings()
    home = use_dagster_home(settings)
    dagster = shutil.which("dagster") or ""
    command = [dagster, "dev"] if dagster else [sys.executable, "-m", "dagster", "dev"]
    command += ["-m", "opx_learning.definitions", "--host", host, "--port", str(port)]
    click.echo(f"Dagster UI on DAGSTER_HOME={home} (OPX_HOME={settings.home}, store {settings.store_description})")
    click.echo(f"  http://{host}:{port}   (Ctrl-C stops it)")
    sys.stdout.flush()
    os.execvpe(command[0], command, {**os.environ, "DAGSTER_HOME": str(home)})
