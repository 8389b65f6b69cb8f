"""One composition root: only the modules listed here read the environment or choose by the backend's name.

Everything else receives its settings, stores, publishers and clock as arguments
(`opx_learning.backends` builds the per-backend objects from `Settings`). The check reads
the source with `ast`, so comments and docstrings that name `os.environ` do not count.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "opx_learning"

# The composition root and the entry points: each may read the process environment.
ALLOWED = {
    "opx_learning/config.py",  # Settings.from_env / get_settings
    "opx_learning/backends.py",  # backend_for: the one choice by backend name
    "opx_learning/build.py",  # build_defs / build_resources
    "opx_learning/definitions.py",  # the code location module `dagster dev -m` loads
    "opx_learning/cli/",  # the CLI entry point: reads its settings once per command
    "opx_learning/api/app.py",  # create_app: the REST app factory `uvicorn --factory` calls
    "opx_learning/api/worker.py",  # the REST app's worker process (settings and adoption token from its env)
    # The batching event log is an instance storage class Dagster builds from dagster.yaml: like
    # Dagster's own SQLite storage it finds its directory through DAGSTER_HOME.
    "opx_learning/app/event_log.py",
}


def _allowed(relative: str) -> bool:
    return any(relative == entry or (entry.endswith("/") and relative.startswith(entry)) for entry in ALLOWED)


def _is_backend_name(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return True
    return isinstance(node, (ast.Tuple, ast.List, ast.Set)) and any(_is_backend_name(item) for item in node.elts)


def _is_backend(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr in ("backend", "BACKEND")


def violations(source: str) -> list[str]:
    """What in `source` reads the environment, resolves settings from it, or compares a backend to a name."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "os" and (
            node.attr in ("environ", "getenv", "environb", "getenvb", "putenv", "unsetenv")
        ):
            found.append((line, f"os.{node.attr}"))
        elif isinstance(node, ast.ImportFrom) and node.module == "os" and any(
            alias.name in ("environ", "getenv", "environb", "getenvb") for alias in node.names
        ):
            found.append((line, f"from os import {', '.join(alias.name for alias in node.names)}"))
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
            if name == "get_settings":
                found.append((line, "get_settings()"))
            elif isinstance(func, ast.Attribute) and func.attr == "from_env" and (
                isinstance(func.value, ast.Name) and func.value.id == "Settings"
            ):
                found.append((line, "Settings.from_env()"))
        elif isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(_is_backend(side) for side in sides) and any(_is_backend_name(side) for side in sides):
                found.append((line, "compares a backend with a name"))
        elif isinstance(node, ast.Subscript) and _is_backend(node.slice):
            found.append((line, "looks up by backend name"))
    return [f"{line}: {what}" for line, what in sorted(found)]


def test_the_checks_see_what_they_look_for() -> None:
    source = (
        "import os\nfrom os import environ\nos.environ.get('X')\nos.getenv('X')\nget_settings()\n"
        "config.get_settings()\nSettings.from_env()\nif settings.backend == 'aws': pass\n"
        "if 'local' != s.backend: pass\nif settings.backend in ('aws',): pass\nTABLE[settings.backend]\n"
        "Settings(home='x')\nsettings.backend\nos.path.join('a')\n"
    )
    assert [entry.split(": ", 1)[1] for entry in violations(source)] == [
        "from os import environ",
        "os.environ",
        "os.getenv",
        "get_settings()",
        "get_settings()",
        "Settings.from_env()",
        "compares a backend with a name",
        "compares a backend with a name",
        "compares a backend with a name",
        "looks up by backend name",
    ]


def test_only_the_composition_root_and_entry_points_read_the_environment_or_the_backend_name() -> None:
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).as_posix()
        if _allowed(relative):
            continue
        found = violations(path.read_text())
        if found:
            offenders[relative] = found
    assert not offenders, (
        "only the composition root (config.py, backends.py, build.py) and the entry points read the environment "
        f"or choose by backend name; pass Settings or what backend_for(settings) builds instead: {offenders}"
    )


def test_every_allowed_module_still_needs_its_exception() -> None:
    # An entry whose module no longer reads the environment is removed, so the list only shrinks.
    files = [entry for entry in sorted(ALLOWED) if entry.endswith(".py")]
    stale = [entry for entry in files if not violations((PACKAGE.parent / entry).read_text())]
    assert not stale, f"no longer read the environment or the backend name; remove from ALLOWED: {stale}"
