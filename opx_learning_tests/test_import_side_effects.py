"""Importing any opx_learning module leaves the process as it was: environment, warning filters, logging.

A fresh interpreter with a clean environment first imports every third-party module that
opx_learning names in an import statement (what those libraries do on import is theirs),
takes a snapshot, imports every module of opx_learning (pkgutil, nothing skipped), and
compares: `os.environ`, `warnings.filters`, the root logger's handlers and level, and the
level, handlers, propagation and disabling of every logger (a logger opx_learning creates
is left as `logging.getLogger` makes it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent(
    '''
    import ast, importlib, importlib.util, json, logging, os, pkgutil, sys, warnings
    from pathlib import Path

    package = Path(importlib.util.find_spec("opx_learning").submodule_search_locations[0])
    # 1. The third-party modules opx_learning imports anywhere (module level or in a function).
    names = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
    for name in sorted(n for n in names if n.split(".")[0] != "opx_learning"):
        try:
            importlib.import_module(name)
        except Exception:  # not a module (a name imported from one), or an optional dependency
            pass

    def loggers():
        found = {}
        for name, logger in dict(logging.root.manager.loggerDict).items():
            if isinstance(logger, logging.Logger):
                found[name] = (logger.level, [repr(h) for h in logger.handlers], logger.propagate, logger.disabled)
        return found

    def snapshot():
        return {
            "environ": dict(os.environ),
            "filters": [repr(f) for f in warnings.filters],
            "root": (logging.root.level, [repr(h) for h in logging.root.handlers]),
            "disable": logging.root.manager.disable,
            "loggers": loggers(),
            "showwarning": repr(warnings.showwarning),
        }

    before = snapshot()
    assert "opx_learning" not in sys.modules
    # 2. Every module of opx_learning.
    imported = []
    def failed(name):
        raise RuntimeError(f"cannot import {name}")
    import opx_learning
    imported.append("opx_learning")
    for module in pkgutil.walk_packages(opx_learning.__path__, "opx_learning.", onerror=failed):
        importlib.import_module(module.name)
        imported.append(module.name)
    after = snapshot()

    changes = {}
    for key in ("environ", "filters", "root", "disable", "showwarning"):
        if before[key] != after[key]:
            changes[key] = {"before": before[key], "after": after[key]}
    for name, state in after["loggers"].items():
        expected = before["loggers"].get(name, (logging.NOTSET, [], True, False))
        if state != expected:
            changes[f"logger {name}"] = {"before": expected, "after": state}
    print(json.dumps({"imported": imported, "changes": changes}, default=str))
    '''
)


def test_importing_every_module_changes_no_environment_warning_filter_or_logging(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "PYTHONPATH": str(ROOT),  # this checkout's opx_learning, whatever is installed
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    expected = sorted(
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for path in (ROOT / "opx_learning").rglob("*.py")
    )
    assert sorted(report["imported"]) == expected  # every module, nothing skipped
    assert report["changes"] == {}
