"""Entry point of `opx-learning`; subcommands live in sibling modules and load on demand."""

from __future__ import annotations

import importlib
import json
import re
import sys
from typing import TYPE_CHECKING, NoReturn

import click

from opx_learning.cli.text import printable

if TYPE_CHECKING:
    from opx_learning.config import Settings
    from opx_learning.safety.home import HomeProblem

# command name -> "module:attribute"; loaded only when used so `--help` stays fast.
COMMANDS: dict[str, str] = {
    "seed": "opx_learning.cli.data:seed",
    "summary": "opx_learning.cli.data:summary",
    "ingest": "opx_learning.cli.ingest:ingest",
    "demo": "opx_learning.cli.orchestration:demo",
    "init": "opx_learning.cli.safety:init",
    "trigger": "opx_learning.cli.orchestration:trigger",
    "kill-switch": "opx_learning.cli.safety:kill_switch",
    "audit": "opx_learning.cli.safety:audit",
    "aws": "opx_learning.cli.safety:aws",
    "api": "opx_learning.cli.api:api",
    "status": "opx_learning.cli.monitoring:status",
    "monitoring": "opx_learning.cli.monitoring:monitoring",
    "verify": "opx_learning.cli.integrity:verify",
    "checklist": "opx_learning.cli.checklist:checklist",
    "ui": "opx_learning.cli.ui:ui",
    "snapshot": "opx_learning.cli.snapshots:snapshot",
    "thresholds": "opx_learning.cli.thresholds:thresholds",
}

HELP = {
    "seed": "Write synthetic outcomes to the active backend's outcome store.",
    "summary": "Print pattern and calibration summaries of stored outcomes.",
    "ingest": "Validate outcome exports and write their new rows to the outcome store by day.",
    "demo": "Seed 90 days and materialize every asset in DAGSTER_HOME.",
    "init": "Create the safety state (kill switch ENABLED); --force re-initialises it.",
    "trigger": "Run an operation manually over a date range.",
    "kill-switch": "Show or change the kill switch.",
    "audit": "Read the audit trail.",
    "aws": "Create the AWS resources the aws backend needs.",
    "api": "Serve the REST API (runbook paths and bodies) with uvicorn.",
    "status": "Show the dashboard's six rows from the audit trail.",
    "monitoring": "Deploy the CloudWatch dashboard, alarms and alert topic (aws).",
    "verify": "Re-read stored snapshots, partitions and audit records; P0 on corruption.",
    "checklist": "Evaluate the runbook's morning checklist as of a time; exit 1 on a FAIL.",
    "ui": "Open the Dagster UI (dagster dev) on the instance the CLI and the demo use.",
    "snapshot": "List, show and diff stored snapshots.",
    "thresholds": "Propose, approve, reject and list confidence threshold changes (four eyes).",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, HELP.get(name, "")) for name in self.list_commands(ctx)])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="opx_learning")
def cli() -> None:
    """Learning operations for an incident-response platform (patterns, calibration, snapshots)."""


_CODE = re.compile(r"^([A-Z][A-Z0-9_]+): ")
EXIT_CORRUPTION, EXIT_UNAVAILABLE, EXIT_HOME = 1, 3, 1
_HELP = frozenset({"-h", "--help", "--version"})


def _error_json(kind: str, message: str, store: str | None = None) -> str:
    code = _CODE.match(message)
    body = {"error": code.group(1) if code else kind, "message": message}
    if store:
        body["store"] = store
    return json.dumps(body)


def _settings() -> Settings | None:
    from opx_learning.cli.environment import command_settings

    try:
        return command_settings()
    except Exception:  # noqa: BLE001 - the command itself reports a malformed setting
        return None


def _home_unavailable(settings: Settings, problem: HomeProblem, as_json: bool, argv: list[str]) -> NoReturn:
    """Report an unusable home (reason, path, cause), raise its P1 alert and exit 1."""
    from opx_learning.backends import backend_for
    from opx_learning.safety.home import raise_alert

    command = " ".join(word for word in argv[:2] if not word.startswith("-"))
    not_recorded = raise_alert(settings, problem, command=f"opx-learning {command}".strip())
    try:
        target = backend_for(settings).alert_target
    except Exception:  # noqa: BLE001 - only used in the message
        target = "the alert channel"
    alert = (f"P1 {problem.reason} alert raised ({target})" if not_recorded is None
             else f"the P1 {problem.reason} alert could not be recorded: {not_recorded}")
    if as_json:
        body = {**problem.to_dict(), "store": settings.store_description,
                "alert_recorded": not_recorded is None, "alert": alert}
        click.echo(json.dumps(body))
    else:
        click.echo(f"Error: {printable(problem.message)}\n  {printable(alert)}", err=True)
    sys.exit(EXIT_HOME)


def main(args: list[str] | None = None) -> None:
    """Run the CLI; user mistakes exit non-zero with a message (JSON with `--json`), never a traceback.

    Before a command runs, an unusable home (docs/safety-state.md#unusable-home) ends it with
    `KILL_SWITCH_UNAVAILABLE` or `HOME_UNAVAILABLE`, exit 1 and a P1 alert; so does a file
    error under the home that escapes a command.
    """
    from opx_learning.config import ConfigurationError
    from opx_learning.integrity.findings import IntegrityError
    from opx_learning.safety.home import home_problem
    from opx_learning.safety.models import BackendUnavailable, InvalidRequest

    argv = sys.argv[1:] if args is None else args
    as_json = "--json" in argv
    settings = None if not argv or _HELP.intersection(argv) else _settings()
    if settings is not None:
        problem = home_problem(settings)
        if problem is not None:
            _home_unavailable(settings, problem, as_json, argv)
    try:
        result = cli.main(args=argv, prog_name="opx-learning", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted!", err=True)
        sys.exit(1)
    except click.ClickException as error:
        kind = "USAGE_ERROR" if isinstance(error, click.UsageError) else "ERROR"
        if as_json:
            message = getattr(error, "detail", None) or error.format_message()
            click.echo(_error_json(kind, message, getattr(error, "store", None)))
        else:
            error.show()
        sys.exit(error.exit_code)
    except (InvalidRequest, ConfigurationError) as error:
        # A configuration mistake (e.g. a malformed OPX_RATE_LIMITS), not a bug: say which setting.
        click.echo(_error_json("INVALID_CONFIGURATION", str(error)) if as_json else f"Error: {error}", err=not as_json)
        sys.exit(2)
    except IntegrityError as error:
        # Stored data failed its check before it was used: the P0 alert is already raised.
        message = f"{error} (P0 DATA_CORRUPTION raised; the object is left as evidence, see docs/integrity.md)"
        click.echo(_error_json("DATA_CORRUPTION", message) if as_json else f"Error: {message}", err=not as_json)
        sys.exit(EXIT_CORRUPTION)
    except BackendUnavailable as error:
        click.echo(_error_json("STORE_UNAVAILABLE", str(error)) if as_json else f"Error: {error}", err=not as_json)
        sys.exit(EXIT_UNAVAILABLE)
    except OSError as error:
        problem = home_problem(settings, error) if settings is not None else None
        if problem is not None:
            _home_unavailable(settings, problem, as_json, argv)  # type: ignore[arg-type]
        message = printable(str(error))
        click.echo(_error_json("FILE_ERROR", message) if as_json else f"Error: {message}", err=not as_json)
        sys.exit(EXIT_CORRUPTION)
    sys.exit(result if isinstance(result, int) else 0)


if __name__ == "__main__":
    main()
