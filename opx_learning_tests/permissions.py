"""Real unreadable paths for tests, also when the tests run as root.

Root passes every permission check through the capabilities CAP_DAC_OVERRIDE and
CAP_DAC_READ_SEARCH; a command started through `restricted()` runs as the same user without
them (`setpriv` drops them from its bounding set), so `chmod 000` stops it as it stops an
ordinary user. Not root: nothing to drop.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

_DROP = "--bounding-set=-dac_override,-dac_read_search"


def restricted() -> list[str]:
    """The command prefix under which file permissions apply to this user (skips when root cannot drop them)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: file permissions cannot be enforced")
    probe = subprocess.run([setpriv, _DROP, "--", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"setpriv cannot drop the DAC capabilities here: {probe.stderr.decode().strip()}")
    return [setpriv, _DROP, "--"]


@contextmanager
def mode(path: Path, bits: int) -> Iterator[Path]:
    """`path` with permission `bits` inside the block, its former mode restored after (even on failure)."""
    before = path.stat().st_mode & 0o7777
    path.chmod(bits)
    try:
        yield path
    finally:
        path.chmod(before)
