"""The Dagster instance of DAGSTER_HOME as the CLI, the REST API and the demo use it."""

from __future__ import annotations

from pathlib import Path

from opx_learning.config import DEFAULT_PARTITIONS_START, Settings

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
_INSTANCE_READY = ".opx-instance-ready"


def ensure_dagster_home(settings: Settings) -> Path:
    """The settings' Dagster instance directory, created with a `dagster.yaml` and the instance's storage.

    `settings.dagster_home_dir` is `DAGSTER_HOME` when set, else `<home>/dagster_home`. The
    storage (Dagster's SQLite schema) is created once, under a file lock, before any run
    starts: processes that open a fresh instance at the same moment would otherwise race on
    the schema migration ("table runs already exists"). The entry points (CLI, REST app)
    export the directory as `DAGSTER_HOME` first: the instance's event log storage and the
    processes Dagster starts find it there.
    """
    home = settings.dagster_home_dir
    home.mkdir(parents=True, exist_ok=True)
    config, ready = home / "dagster.yaml", home / _INSTANCE_READY
    if config.exists() and ready.exists() and not _former_default(config):
        return home
    from filelock import FileLock

    with FileLock(home / ".opx-instance.lock"):
        if not config.exists() or _former_default(config):
            source = _REPO_DAGSTER_YAML.read_text() if _REPO_DAGSTER_YAML.exists() else DEFAULT_DAGSTER_YAML
            config.write_text(source)
        if not ready.exists():
            _initialise_instance(home)
            ready.touch()
    return home


def _former_default(config: Path) -> bool:
    """Whether `config` is an earlier release's default `dagster.yaml`, unedited (a customised file is kept)."""
    try:
        return config.read_text() == FORMER_DAGSTER_YAML
    except OSError:
        return False


def _initialise_instance(home: Path) -> None:
    """Open the instance in `home` once, which creates (or migrates the stamp of) its storage."""
    import dagster as dg

    instance = dg.DagsterInstance.from_config(str(home))
    try:
        instance.get_runs(limit=1)
    finally:
        instance.dispose()


def dev_command(settings: Settings, dagster_home: Path) -> str:
    """The shell command that opens this instance in the Dagster UI."""
    start = settings.partitions_start.isoformat()
    partitions = f"OPX_PARTITIONS_START={start} " if start != DEFAULT_PARTITIONS_START else ""
    return f"OPX_HOME={settings.home} {partitions}DAGSTER_HOME={dagster_home} dagster dev"
