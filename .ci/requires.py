"""Print what an installed distribution requires, without any dagster package, one a line.

    python .ci/requires.py DIST [EXTRA]

The requirements of DIST that apply on this interpreter, with EXTRA's added, leaving out
`dagster` and every `dagster-*`: .ci/run's newest-Dagster venv installs those itself.
Every dagster-aws / dagster-postgres release pins one dagster release (0.29.N needs
dagster==1.13.N), so pip cannot resolve `.[test]` against a dagster that has no
matching dagster-aws yet; the venv installs the rest of `.[test]` from this list and
dagster-aws / dagster-postgres with --no-deps, then their own requirements from this list.

    python .ci/requires.py --pin DIST

Print the dagster version DIST pins (`dagster==X`), or nothing.
"""

from __future__ import annotations

import sys
from importlib.metadata import requires

try:
    from packaging.requirements import Requirement
except ImportError:  # a venv without packaging: pip's own copy
    from pip._vendor.packaging.requirements import Requirement


def _is_dagster(name: str) -> bool:
    name = name.lower().replace("_", "-")
    return name == "dagster" or name.startswith("dagster-")


def main(argv: list[str]) -> int:
    if argv[:1] == ["--pin"] and len(argv) == 2:
        for line in requires(argv[1]) or []:
            req = Requirement(line)
            if req.name.lower() == "dagster" and not req.marker:
                print(str(req.specifier).removeprefix("=="))
        return 0
    if len(argv) not in (1, 2):
        print(__doc__, file=sys.stderr)
        return 2
    extra = argv[1] if len(argv) == 2 else ""
    for line in requires(argv[0]) or []:
        req = Requirement(line)
        if _is_dagster(req.name):
            continue
        if req.marker and not req.marker.evaluate({"extra": extra}):
            continue
        req.marker = None
        print(req)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
