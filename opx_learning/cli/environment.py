"""What the CLI, an entry point, reads from its process environment: the settings, the principal, DAGSTER_HOME.

Each command reads its settings once (`command_settings`) and passes them down; nothing
below the CLI reads the environment.
"""

from __future__ import annotations

import os
from pathlib import Path

from opx_learning.config import Settings


def command_settings() -> Settings:
    """The settings of this command: the `OPX_*` and `AWS_*` variables as they are now.

    The settings' Dagster instance directory is exported as `DAGSTER_HOME` (unchanged when set):
    the instance's event log storage, and every process a command starts, find it there.
    """
    settings = Settings.from_env()
    os.environ["DAGSTER_HOME"] = str(settings.dagster_home_dir)
    return settings


def principal_name(given: str | None) -> str | None:
    """`--principal` when given, else `OPX_PRINCIPAL` (unset or empty: None, the OS user / AWS caller identity)."""
    if given is not None:
        return given
    return os.environ.get("OPX_PRINCIPAL") or None


def existing_dagster_home(settings: Settings) -> Path | None:
    """The settings' Dagster instance directory if it holds an instance, else None."""
    home = settings.dagster_home_dir
    return home if (home / "dagster.yaml").exists() else None


def use_dagster_home(settings: Settings) -> Path:
    """The settings' Dagster instance, created if needed and exported as this process's `DAGSTER_HOME`.

    Dagster finds the instance of a process (`DagsterInstance.get()`) and of the processes it
    starts (a queued run's `dagster job launch`) through `DAGSTER_HOME`.
    """
    from opx_learning.app.instance import ensure_dagster_home

    # Exported first: the instance's event log storage finds its files through DAGSTER_HOME.
    os.environ["DAGSTER_HOME"] = str(settings.dagster_home_dir)
    return ensure_dagster_home(settings)
