"""What the hash chain costs per audit write: 1000 appends, 1000 completions and 1000 kill-switch reads on SQLite.

    python benchmarks/bench_chain.py                      # this checkout
    python benchmarks/bench_chain.py --baseline 74132ff   # and a revision before the chain, side by side
    python benchmarks/bench_chain.py --dir /dev/shm --repeat 5

Each measurement runs in a fresh process on a freshly initialised home (under `--dir`,
default the system's temporary directory), as `opx-learning init` creates it; the best of
`--repeat` runs is reported. The baseline is the package of `--baseline` taken with
`git archive`, run the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
N = 1000


def measure(directory: str) -> dict[str, float]:
    """Milliseconds per operation of the package on `sys.path`, in a fresh home under `directory`."""
    home = Path(tempfile.mkdtemp(dir=directory))
    os.environ.update(OPX_HOME=str(home), OPX_BACKEND="local")
    from opx_learning.config import Settings
    from opx_learning.safety.models import AuthorityType, Principal
    from opx_learning.safety.sqlite_backend import open_sqlite
    from opx_learning.safety.state import initialise

    initialise(Settings.from_env())
    audit, kill_switch, _ = open_sqlite(home / "state.db")
    principal = Principal("alice", AuthorityType.ON_CALL_SRE)
    started = time.perf_counter()
    ids = [audit.start("CALIBRATION", "MANUAL", principal).audit_id for _ in range(N)]
    appended = time.perf_counter()
    for audit_id in ids:
        audit.complete(audit_id, "SUCCESS", results={"n": 1})
    completed = time.perf_counter()
    for _ in range(N):
        kill_switch.read()
    read = time.perf_counter()
    return {"append_ms": (appended - started) * 1000 / N, "complete_ms": (completed - appended) * 1000 / N,
            "kill_switch_read_ms": (read - completed) * 1000 / N}


def _run(path: Path, directory: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--child", "--dir", directory], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": str(path)})
    return json.loads(out.stdout)


def _best(path: Path, directory: str, repeat: int) -> dict[str, float]:
    runs = [_run(path, directory) for _ in range(repeat)]
    return {key: min(run[key] for run in runs) for key in runs[0]}


def main() -> None:
    """Print a Markdown table (or JSON) of ms per operation, this checkout and the baseline."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", help="a git revision to compare with")
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where the homes are created")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.dir)))
        return
    results = {"this checkout": _best(ROOT, args.dir, args.repeat)}
    if args.baseline:
        with tempfile.TemporaryDirectory() as tree:
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.baseline], capture_output=True,
                                     check=True).stdout
            subprocess.run(["tar", "-x", "-C", tree], input=archive, check=True)
            results[args.baseline] = _best(Path(tree), args.dir, args.repeat)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print("| code | append (ms) | complete (ms) | kill-switch read (ms) |")
    print("|---|---|---|---|")
    for name, row in results.items():
        print(f"| {name} | {row['append_ms']:.3f} | {row['complete_ms']:.3f} | {row['kill_switch_read_ms']:.3f} |")


if __name__ == "__main__":
    main()
