"""OPX_PARTITIONS_START: read with the other settings, checked, and used by the partitions, demo and trigger."""

from __future__ import annotations

import os
import signal
import subprocess
from datetime import date
from pathlib import Path

import pytest

from opx_learning.config import ConfigurationError, get_settings, partitions_start


def run(args: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run the console script in its own process group; the group is killed whatever happens."""
    process = subprocess.Popen(
        ["opx-learning", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=timeout)
        return subprocess.CompletedProcess(process.args, process.returncode, out, err)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_default_explicit_and_bad_values() -> None:
    assert partitions_start({}) == partitions_start({"OPX_PARTITIONS_START": " "}) == date(2025, 1, 1)
    assert partitions_start({"OPX_PARTITIONS_START": " 2019-03-01 "}) == date(2019, 3, 1)
    assert get_settings({"OPX_PARTITIONS_START": "2023-06-15"}).partitions_start == date(2023, 6, 15)
    for bad in ("2024-13-01", "2024-3-1", "yesterday", "1969-12-31", "2200-01-01", "2024-01-01T00:00"):
        with pytest.raises(ConfigurationError, match=rf"OPX_PARTITIONS_START: '{bad}' is not a day"):
            partitions_start({"OPX_PARTITIONS_START": bad})


def test_a_bad_start_is_exit_2_naming_the_variable(opx_home: Path) -> None:
    env = {**os.environ, "OPX_PARTITIONS_START": "2024-02-30"}
    done = run(["trigger", "extract-patterns", "--start", "2024-06-10", "--end", "2024-06-11"], env, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "OPX_PARTITIONS_START: '2024-02-30' is not a day" in done.stderr
    assert "Traceback" not in done.stderr


def test_partitions_before_2025_materialize_with_an_earlier_start(opx_home: Path, dagster_home: Path) -> None:
    env = {**os.environ, "OPX_PARTITIONS_START": "2024-05-01"}
    seeded = run(["seed", "--start", "2024-06-01", "--end", "2024-06-15", "--per-day", "30", "--json"], env)
    assert seeded.returncode == 0, seeded.stderr
    done = run(["trigger", "extract-patterns", "--start", "2024-06-10", "--end", "2024-06-12", "--json"], env)
    assert done.returncode == 0, done.stderr + done.stdout
    assert '"SUCCESS"' in done.stdout
    # The same request with the default start is refused: the days lie before its first partition.
    default = {k: v for k, v in env.items() if k != "OPX_PARTITIONS_START"}
    refused = run(["trigger", "extract-patterns", "--start", "2024-06-10", "--end", "2024-06-12"], default)
    assert refused.returncode == 2 and "before the first partition (2025-01-01)" in refused.stderr
