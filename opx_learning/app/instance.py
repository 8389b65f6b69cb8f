"""The Dagster instance of DAGSTER_HOME as the CLI, the REST API and the demo use it."""

from __future__ import annotations

import os
from pathlib import Path

from opx_learning.config import Settings, get_settings

DEFAULT_DAGSTER_YAML = """\
# Local Dagster instance settings (copied into DAGSTER_HOME by `opx-learning demo`).
run_coordinator:
  # Dagster's queue: UI launches, backfills and schedules wait for the daemon `dagster dev` runs;
  # opx-learning's commands run in process while no daemon is alive (opx_learning.app.coordinator).
  module: opx_learning.app.coordinator
  class: LocalRunCoordinator
event_log_storage:
  # Dagster's SQLite event log, with its engines kept and ranged runs' events written in batches.
  module: opx_learning.app.event_log
  class: BatchingSqliteEventLogStorage
telemetry:
  enabled: false
"""
# Earlier releases' default, replaced by the current one where a home still has it unchanged.
FORMER_DAGSTER_YAML = """\
# Local Dagster instance settings (copied into DAGSTER_HOME by `opx-learning demo`).
run_coordinator:
  module: dagster.core.run_coordinator
  class: DefaultRunCoordinator
telemetry:
  enabled: false
"""
_REPO_DAGSTER_YAML = Path(__file__).resolve().parents[2] / "dagster.yaml"
DEFAULT_UI_URL = "http://127.0.0.1:3000"
_INSTANCE_READY = ".opx-instance-ready"


def ensure_dagster_home(settings: Settings | None = None) -> Path:
    """Use DAGSTER_HOME, else `$OPX_HOME/dagster_home`; create it with a `dagster.yaml` and the instance's storage.

    The storage (Dagster's SQLite schema) is created once, under a file lock, before any run
    starts: processes that open a fresh instance at the same moment would otherwise race on
    the schema migration ("table runs already exists").
    """
    raw = os.environ.get("DAGSTER_HOME")
    home = Path(raw).expanduser().absolute() if raw else (settings or get_settings()).home / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    config, ready = home / "dagster.yaml", home / _INSTANCE_READY
    if config.exists() and ready.exists() and not _former_default(config):
        return home
    from filelock import FileLock

    with FileLock(home / ".opx-instance.lock"):
        if not config.exists() or _former_default(config):
            source = _REPO_DAGSTER_YAML.read_text() if _REPO_DAGSTER_YAML.exists() else DEFAULT_DAGSTER_YAML
            config.write_text(source)
        if not ready.exists():
            _initialise_instance()
            ready.touch()
    return home


def _former_default(config: Path) -> bool:
    """Whether `config` is an earlier release's default `dagster.yaml`, unedited (a customised file is kept)."""
    try:
        return config.read_text() == FORMER_DAGSTER_YAML
    except OSError:
        return False


def _initialise_instance() -> None:
    """Open the instance of DAGSTER_HOME once, which creates (or migrates the stamp of) its storage."""
    import dagster as dg

    instance = dg.DagsterInstance.get()
    try:
        instance.get_runs(limit=1)
    finally:
        instance.dispose()


def ui_url() -> str:
    """Where the Dagster UI is reached: `OPX_UI_URL` (e.g. behind a proxy or on another port), else port 3000."""
    return (os.environ.get("OPX_UI_URL", "").strip() or DEFAULT_UI_URL).rstrip("/")


def dev_command(dagster_home: Path) -> str:
    """The shell command that opens this instance in the Dagster UI."""
    settings = get_settings()
    start = os.environ.get("OPX_PARTITIONS_START", "").strip()
    partitions = f"OPX_PARTITIONS_START={settings.partitions_start.isoformat()} " if start else ""
    return f"OPX_HOME={settings.home} {partitions}DAGSTER_HOME={dagster_home} dagster dev"
