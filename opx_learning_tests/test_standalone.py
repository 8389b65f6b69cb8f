"""The repository stands alone: no tracked file points at a document outside it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Built from pieces so that this file does not contain them itself.
FORBIDDEN = ("../" + "shared", "SPEC" + ".md", "SPEC" + " §")
DESIGN = "docs/" + "design.md"
_DESIGN_ANCHOR = re.compile(r"\bdesign\.md#([A-Za-z0-9_-]+)")
_OWN_ANCHOR = re.compile(r"\]\(#([A-Za-z0-9_-]+)\)")
_HTML_ANCHOR = re.compile(r'<a id="([^"]+)"></a>')


def _tracked_text_files() -> list[tuple[str, str]]:
    """Every file git tracks whose content is text, as (path, content)."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True
        ).stdout.decode()
    except (OSError, subprocess.CalledProcessError) as error:
        pytest.skip(f"not a git checkout: {error}")
    files = []
    for name in filter(None, listed.split("\0")):
        path = ROOT / name
        if not path.is_file():
            continue  # deleted in the working tree, not yet committed
        data = path.read_bytes()
        if b"\0" in data:
            continue  # binary
        try:
            files.append((name, data.decode("utf-8")))
        except UnicodeDecodeError:
            continue
    return files


def test_no_tracked_file_refers_to_an_outside_document() -> None:
    hits = [
        f"{name}:{number}: {line.strip()}"
        for name, text in _tracked_text_files()
        for number, line in enumerate(text.splitlines(), 1)
        if any(word in line for word in FORBIDDEN)
    ]
    assert not hits, "references to a document outside the repository:\n" + "\n".join(hits)


def test_design_anchors_cited_anywhere_exist() -> None:
    design = (ROOT / DESIGN).read_text()
    anchors = set(_HTML_ANCHOR.findall(design))
    cited = [(name, anchor) for name, text in _tracked_text_files() for anchor in _DESIGN_ANCHOR.findall(text)]
    cited += [(DESIGN, anchor) for anchor in _OWN_ANCHOR.findall(design)]
    missing = [f"{name}: #{anchor}" for name, anchor in cited if anchor not in anchors]
    assert not missing, f"anchors not defined in {DESIGN}:\n" + "\n".join(missing)
