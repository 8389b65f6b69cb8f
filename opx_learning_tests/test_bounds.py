"""Instants outside 1970-01-01 .. 2200-01-01 UTC are clear user errors: WindowError in code, exit 2 on the CLI."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from opx_learning.core.windows import (
    MAX_INSTANT,
    MIN_INSTANT,
    Window,
    WindowError,
    to_utc,
)

OUTSIDE = "outside the supported range 1970-01-01 (inclusive) to 2200-01-01 (exclusive) UTC"


@pytest.mark.parametrize(
    ("start", "end", "field", "value"),
    [
        ("0001-01-02", "2026-01-01", "start", "0001-01-02"),
        ("2026-01-01", "9999-12-31T23:59:59.999Z", "end", "9999-12-31T23:59:59.999Z"),
        # Converting these to UTC overflows Python's datetime.
        ("0001-01-01T00:00:00+01:00", "2026-01-01", "start", "0001-01-01T00:00:00+01:00"),
        ("2026-01-01", "9999-12-31T23:00:00-05:00", "end", "9999-12-31T23:00:00-05:00"),
        ("1969-12-31T23:59:59.999Z", "2026-01-01", "start", "1969-12-31T23:59:59.999Z"),
        ("2026-01-01", "2200-01-01T00:00:00.001Z", "end", "2200-01-01T00:00:00.001Z"),
        # A runbook-style end of day that would end after 2200-01-01.
        ("2026-01-01", "2200-01-01T23:59:59.999Z", "end", "2200-01-01T23:59:59.999Z"),
        (date(1000, 1, 1), date(2026, 1, 1), "start", "1000-01-01"),
        (datetime(2026, 1, 1), datetime(9000, 1, 1), "end", "9000-01-01T00:00:00"),
    ],
)
def test_window_bounds_outside_the_range_name_field_and_value(start: object, end: object, field: str, value: str) -> None:
    with pytest.raises(WindowError) as caught:
        Window.parse(start, end)  # type: ignore[arg-type]
    assert str(caught.value) == f"{field}: {value!r} is {OUTSIDE}"


def test_the_edges_of_the_range_are_accepted() -> None:
    window = Window.parse("1970-01-01", "2199-12-31T23:59:59.999Z")
    assert (window.start, window.end) == (MIN_INSTANT, MAX_INSTANT)
    assert Window.parse("2199-12-31", "2200-01-01").end == datetime(2200, 1, 1, tzinfo=UTC)
    assert to_utc("1970-01-01T00:00:00.000Z") == datetime(1970, 1, 1, tzinfo=UTC)
    with pytest.raises(WindowError, match=re.escape(f"at: '2200-01-01' is {OUTSIDE}")):
        to_utc("2200-01-01", "at")


def _cli(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OPX_HOME": str(tmp_path / "opx"), "DAGSTER_HOME": str(tmp_path / "dagster_home"),
           "OPX_BACKEND": "local"}
    env.pop("OPX_PRINCIPALS", None)
    return subprocess.run([sys.executable, "-m", "opx_learning.cli.main", *args], env=env, capture_output=True,
                          text=True, check=False, timeout=120)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["trigger", "calibrate", "--start", "0001-01-02", "--end", "2026-01-01"], f"--start: '0001-01-02' is {OUTSIDE}"),
        (["trigger", "calibrate", "--start", "2026-01-01", "--end", "9999-12-31T23:59:59.999Z"],
         f"--end: '9999-12-31T23:59:59.999Z' is {OUTSIDE}"),
        (["trigger", "snapshot", "--type", "custom", "--start", "1000-01-01", "--end", "9000-01-01"],
         f"--start: '1000-01-01' is {OUTSIDE}"),
        (["trigger", "extract-patterns", "--start", "2026-01-01", "--end", "9999-12-31"], f"--end: '9999-12-31' is {OUTSIDE}"),
        (["status", "--hours", "99999999"], "--hours"),
    ],
)
def test_cli_refuses_out_of_range_dates_with_exit_2(args: list[str], expected: str, tmp_path: Path) -> None:
    result = _cli(args, tmp_path)
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    # Refused before any audit record, rate-limit slot or run.
    assert not (tmp_path / "dagster_home" / "storage").exists()
