"""Every registered command loads and answers --help."""

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from opx_learning.cli.main import COMMANDS, cli


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_command_loads_and_has_help(name: str) -> None:
    command = cli.get_command(click.Context(cli), name)
    assert isinstance(command, click.Command)
    result = CliRunner().invoke(cli, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: " in result.output


def test_console_script_lists_every_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "opx_learning.cli.main", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    for name in COMMANDS:
        assert name in result.stdout


def test_unknown_command_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["frobnicate"])
    assert result.exit_code == 2
    assert "No such command 'frobnicate'" in result.output


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "opx_learning.cli.main", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **env},
    )


def test_malformed_setting_is_a_clear_error_not_a_traceback(opx_home: Path) -> None:
    result = _run(
        ["trigger", "calibrate", "--start", "2026-10-01", "--end", "2026-11-01"],
        {"OPX_RATE_LIMITS": "CALIBRATION=abc"},
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "OPX_RATE_LIMITS: 'CALIBRATION=abc'" in result.stderr


def test_json_mode_reports_errors_as_json(opx_home: Path) -> None:
    refused = _run(["kill-switch", "disable", "--reason", "r", "--principal", "alice", "--json"], {})
    assert refused.returncode == 1
    assert json.loads(refused.stdout)["error"] == "INSUFFICIENT_AUTHORITY"
    usage = _run(["trigger", "calibrate", "--start", "2026-10-01", "--end", "2026-10-01", "--json"], {})
    assert usage.returncode == 2
    body = json.loads(usage.stdout)
    assert body["error"] == "USAGE_ERROR" and body["message"].startswith("--end:")
