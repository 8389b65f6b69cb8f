"""An unusable local home: which path, why, and whether the kill switch can still be read.

The CLI and the REST API ask `home_problem` before a command runs and again when a file
error escapes one. A home whose kill-switch state cannot be read (the home directory itself,
`state.db`, `anchor.db`, their WAL files or the `state.init.json` marker) is
`KILL_SWITCH_UNAVAILABLE`: nothing runs (fail closed). Any other unusable path under the
home (the outcome, asset and snapshot directories, the alerts file, a directory below them)
is `HOME_UNAVAILABLE`. Either raises one P1 alert through the backend's publisher; when the
alert sink is itself the unusable path the alert goes to the log and the caller says so.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opx_learning.config import Settings
from opx_learning.safety.models import SkipReason

KILL_SWITCH_UNAVAILABLE = SkipReason.KILL_SWITCH_UNAVAILABLE.value
HOME_UNAVAILABLE = "HOME_UNAVAILABLE"
ACCESS_HINT = (
    "grant read and write access to it (and search access to its directories) to the user the "
    "commands run as, or point OPX_HOME at the right home; do not re-initialise, the stored state is not lost"
)
PATH_HINT = "restore what belongs at that path (from a backup), or point OPX_HOME at the right home"
# Beside the state database: the anchor store, the WAL files and the marker `opx-learning init` writes.
_STATE_NAMES = ("state.db", "state.db-wal", "state.db-shm", "anchor.db", "anchor.db-wal", "anchor.db-shm",
                "state.init.json")
_DATA_DIRS = ("outcomes", "assets", "snapshots", "dagster_home")


@dataclass(frozen=True)
class HomeProblem:
    """Why the home cannot be used: the reason code, the path and the cause."""

    reason: str
    path: Path
    cause: str
    stopped: bool = False
    """True when a command met the path while running (it stopped there), False when checked before it ran."""

    @property
    def message(self) -> str:
        """One line for the operator: reason, path, cause, what did not happen and what to do."""
        effect = "the command stopped there" if self.stopped else "nothing was run"
        if self.reason == KILL_SWITCH_UNAVAILABLE:
            effect = f"the kill switch state cannot be read, {effect} (fail closed)"
        hint = ACCESS_HINT if self.cause.lower().startswith("permission denied") else PATH_HINT
        return f"{self.reason}: {self.path}: {self.cause}; {effect}; {hint}"

    def to_dict(self) -> dict[str, str]:
        """The JSON form: `error` (the reason), `message`, `path`, `cause`."""
        return {"error": self.reason, "message": self.message, "path": str(self.path), "cause": self.cause}


def _cause(error: OSError) -> str:
    return error.strerror or type(error).__name__


def _missing(path: Path, needs: int) -> str | None:
    """What `path` lacks of `needs` (os.R_OK | os.W_OK | os.X_OK) for this process, or None."""
    words = [word for flag, word in ((os.R_OK, "read"), (os.W_OK, "write"), (os.X_OK, "search"))
             if needs & flag and not os.access(path, flag)]
    if not words:
        return None
    listed = words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"
    return f"permission denied (no {listed} access for uid {os.geteuid()})"


def _check(path: Path, directory: bool) -> str | None:
    """Why an existing `path` is unusable (None: usable or absent)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return None
    except OSError as error:
        return _cause(error)
    if directory and not stat.S_ISDIR(mode):
        return "not a directory"
    if not directory and stat.S_ISDIR(mode):
        return "a directory where a file is expected"
    return _missing(path, os.R_OK | os.W_OK | (os.X_OK if directory else 0))


def _within(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


def home_problem(settings: Settings, error: OSError | None = None) -> HomeProblem | None:
    """What makes the settings' home unusable, or None.

    Args:
        settings: the configuration (its `home`, and on the local backend its state files).
        error: a file error that escaped a command; a path of it under the home (or the Dagster
            home) is reported even when the checks of the home's top level find nothing.
    """
    from opx_learning.backends import backend_for

    home = settings.home
    local = backend_for(settings).state_file is not None
    state_paths = [settings.state_db.with_name(name) for name in _STATE_NAMES] if local else []
    problem = _check(home, directory=True)
    if problem is not None:
        return HomeProblem(KILL_SWITCH_UNAVAILABLE if local else HOME_UNAVAILABLE, home, problem)
    for path in state_paths:
        problem = _check(path, directory=False)
        if problem is not None:
            return HomeProblem(KILL_SWITCH_UNAVAILABLE, path, problem)
    data = [home / name for name in _DATA_DIRS] + [settings.dagster_home_dir]
    for path in data:
        problem = _check(path, directory=True)
        if problem is not None:
            return HomeProblem(HOME_UNAVAILABLE, path, problem)
    problem = _check(settings.alerts_file, directory=False)
    if problem is not None:
        return HomeProblem(HOME_UNAVAILABLE, settings.alerts_file, problem)
    if error is None:
        return None
    for name in (error.filename, error.filename2):
        if not name:
            continue
        path = Path(os.fsdecode(name)).absolute()
        if _within(path, home) or _within(path, settings.dagster_home_dir):
            reason = KILL_SWITCH_UNAVAILABLE if path in state_paths else HOME_UNAVAILABLE
            return HomeProblem(reason, path, _cause(error), stopped=True)
    return None


def raise_alert(settings: Settings, problem: HomeProblem, **details: Any) -> str | None:
    """Raise the P1 alert of `problem`; None when it was recorded, else why not (it then went to the log only)."""
    from opx_learning.alerts.publishers import alert_from_hook, alert_publisher
    from opx_learning.safety.models import log_alert

    body = {"operation": "SAFETY", "path": str(problem.path), "error": problem.message[:2000], **details}
    try:
        publisher = alert_publisher(settings, max_attempts=1)
        target = getattr(publisher, "path", None)
        if publisher.publish(alert_from_hook("P1", problem.reason, body)):
            return None
    except Exception as exc:  # noqa: BLE001 - an alert that cannot be built still reaches the log
        log_alert("P1", problem.reason, body)
        return f"the alert publisher failed ({type(exc).__name__}: {exc})"
    where = f" to {target}" if target is not None else ""
    return f"the alert could not be delivered{where} (it was written to the log only)"
