"""OPX_PARTITIONS_START: read with the other settings, checked, and used by the partitions, demo and trigger."""

from __future__ import annotations

import json
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


def test_demo_moves_the_start_back_to_fit_its_days(opx_home: Path, dagster_home: Path) -> None:
    # 40 days ending 2025-02-01 start on 2024-12-23, before the default start: the demo moves it to 2024-12-01.
    env = {k: v for k, v in os.environ.items() if k != "OPX_PARTITIONS_START"}
    done = run(["demo", "--days", "40", "--per-day", "30", "--end", "2025-02-01", "--json"], env, timeout=900)
    assert "note: partitions start 2024-12-01 for this demo (OPX_PARTITIONS_START)" in done.stderr
    report = json.loads(done.stdout)
    assert all(r["success"] for r in report["runs"]), report["runs"]
    assert report["partitions"]["daily"] == 62 and report["partitions"]["monthly"] == 2  # Dec 1..Jan 31
    assert "OPX_PARTITIONS_START=2024-12-01 " in report["open"]["command"]
    assert [row["month"] for row in report["drift"]] == ["2024-12", "2025-01"]
