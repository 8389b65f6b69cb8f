"""Every registered command loads and answers --help."""

import subprocess
import sys

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
