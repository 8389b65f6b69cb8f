"""opx_learning uses Dagster through its public API only, except in the batching event log storage.

`opx_learning/app/event_log.py` holds an instance storage class (Dagster's extension point),
whose base class is internal; its docstring lists what it relies on. Everywhere else: no
`dagster._…` module, and no private attribute (`_name`) that opx_learning does not define
itself, read or written (`x._name`, `getattr(x, "_name")`, `setattr(x, "_name", …)`).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "opx_learning"
ALLOWED = {PACKAGE / "app" / "event_log.py"}
# Dagster's private attributes opx_learning once swapped or read: never, whoever defines a name like it.
NEVER = {"_evaluation_fn", "_execution_fn", "_description", "_db_lock", "_get_event_batch_size", "_replace"}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _modules() -> dict[Path, ast.Module]:
    return {path: ast.parse(path.read_text(), filename=str(path)) for path in sorted(PACKAGE.rglob("*.py"))}


def _own_private_names(trees: dict[Path, ast.Module]) -> set[str]:
    """Private names opx_learning defines: functions, classes, variables, and attributes it sets on `self` / `cls`."""
    names: set[str] = set()
    for path, tree in trees.items():
        if path in ALLOWED:
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.alias):
                names.add(node.asname or node.name.split(".")[0])
            elif (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store)
                  and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                names.add(node.attr)
    return {name for name in names if _private(name)} - NEVER


def _violations(path: Path, tree: ast.Module, own: set[str]) -> list[str]:
    found = []

    def say(node: ast.AST, text: str) -> None:
        found.append(f"{path.relative_to(PACKAGE.parent)}:{getattr(node, 'lineno', 0)}: {text}")

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dagster._"):
            say(node, f"from {node.module} import ...")
        elif isinstance(node, ast.ImportFrom) and node.module == "dagster":
            for alias in node.names:
                if _private(alias.name):
                    say(node, f"from dagster import {alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("dagster._"):
                    say(node, f"import {alias.name}")
        elif isinstance(node, ast.Attribute) and _private(node.attr):
            if node.attr in NEVER or node.attr not in own:
                say(node, f"private attribute .{node.attr}")
            elif isinstance(node.ctx, ast.Store) and not (
                isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            ):
                say(node, f"sets .{node.attr} on another object")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in ("getattr", "setattr", "hasattr", "delattr") and len(node.args) >= 2
              and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)
              and _private(node.args[1].value) and node.args[1].value not in own):
            say(node, f"{node.func.id}(..., {node.args[1].value!r})")
    return found


def test_no_private_dagster_api_outside_the_event_log_storage() -> None:
    trees = _modules()
    assert len(trees) > 50 and ALLOWED <= set(trees)
    own = _own_private_names(trees)
    found = [text for path, tree in trees.items() if path not in ALLOWED for text in _violations(path, tree, own)]
    assert found == []


def test_the_check_finds_what_it_forbids(tmp_path: Path) -> None:
    source = (
        "import dagster as dg\n"
        "import dagster._check as check\n"
        "from dagster._core.utils import make_new_run_id\n"
        "from dagster import _check\n"
        "x = dg._core\n"
        "sensor._evaluation_fn = None\n"
        "y = schedule._execution_fn\n"
        "definition._description = 'x'\n"
        "z = getattr(storage, '_db_lock')\n"
        "class C:\n"
        "    def f(self):\n"
        "        self._mine = 1\n"
        "        return self._mine, other._mine\n"
        "    def g(self, other):\n"
        "        other._mine = 2\n"
    )
    path = PACKAGE / "example.py"
    found = _violations(path, ast.parse(source), {"_mine"})
    assert [text.split(": ", 1)[1] for text in found] == [
        "import dagster._check",
        "from dagster._core.utils import ...",
        "from dagster import _check",
        "private attribute ._core",
        "private attribute ._evaluation_fn",
        "private attribute ._execution_fn",
        "private attribute ._description",
        "getattr(..., '_db_lock')",
        "sets ._mine on another object",
    ]


def test_the_event_log_storage_says_which_dagster_internals_it_relies_on() -> None:
    (path,) = ALLOWED
    docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
    intro = docstring.split("\n\n")[1]
    assert "the one module of opx_learning that relies on Dagster internals" in intro
    imported = {
        node.module for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dagster._")
    }
    listed = docstring.split("\n\nDagster's `SqliteEventLogStorage` builds")[0]
    assert imported and all(f"`{module}" in listed for module in imported), (imported, listed)
