"""Servers started by tests: each in its own process group, stopped as a whole group, none left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any

_GROUPS: list[int] = []


def spawn(args: Sequence[str], **kwargs: Any) -> subprocess.Popen:
    """Start `args` as the leader of a new process group (servers, daemons and their children)."""
    process = subprocess.Popen(list(args), start_new_session=True, **kwargs)
    _GROUPS.append(process.pid)
    return process


def members(pgid: int) -> list[str]:
    """`pid command` of the live (non-zombie) processes of group `pgid`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError):
            text = stat.read_text()
            # The command sits in parentheses and may contain spaces; fields follow the last ')'.
            fields = text[text.rindex(")") + 2 :].split()
            if fields[0] != "Z" and int(fields[2]) == pgid:
                found.append(f"{stat.parent.name} {text[text.index('(') + 1 : text.rindex(')')]}")
    return found


def stop(process: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM the whole group, wait up to `timeout`, then SIGKILL whatever of it is left."""
    pgid = process.pid
    with suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (process.poll() is None or members(pgid)):
        time.sleep(0.1)
    with suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    process.wait()


def leftovers() -> list[str]:
    """Processes still alive in any group a test started, after killing them (so the suite can say so)."""
    alive = []
    for pgid in _GROUPS:
        found = members(pgid)
        if found:
            alive.extend(found)
            with suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
    return alive
