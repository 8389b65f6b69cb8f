"""The README and docs/ stay true: every command and flag they show exists, every link resolves, the layout is the package's."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from opx_learning.cli.main import cli

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_COMMAND = re.compile(r"opx-learning((?:[ \t]+[^\s`|&;#)\\]+)*)")
_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
_CODE = re.compile(r"```[^\n]*\n(.*?)```|`([^`\n]+)`", re.DOTALL)


def _invocations(text: str) -> list[list[str]]:
    """The words after each `opx-learning` inside code (fenced blocks and inline spans)."""
    code = "\n".join(block or span for block, span in _CODE.findall(text))
    found = []
    for match in _COMMAND.finditer(code):
        words = []
        for word in match.group(1).split():
            if word.startswith(("$", "'", '"', "<", "[", "{", "…")):
                break
            words.append(word)
        found.append(words)
    return found


def _resolve(words: list[str]) -> tuple[click.Command, list[str], list[str]]:
    """Walk the group tree; return the deepest command, the path taken and the remaining words."""
    command: click.Command = cli
    path: list[str] = []
    rest = list(words)
    ctx = click.Context(cli)
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        sub = command.get_command(ctx, rest[0])
        if sub is None:
            break
        command, path, rest = sub, [*path, rest[0]], rest[1:]
    return command, path, rest


def _options(command: click.Command) -> set[str]:
    names = {"--help", "-h"}
    for param in command.params:
        names.update(getattr(param, "opts", []))
        names.update(getattr(param, "secondary_opts", []))
    return names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_commands_and_flags_in_docs_exist(page: Path) -> None:
    problems = []
    for words in _invocations(page.read_text()):
        if not words or words[0].startswith("-") and words[0] in ("--help", "-h", "--version"):
            continue
        command, path, rest = _resolve(words)
        if not path:
            problems.append(f"unknown command: opx-learning {shlex.join(words)}")
            continue
        if isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
            problems.append(f"unknown subcommand: opx-learning {shlex.join(words)}")
            continue
        known = _options(command)
        for word in rest:
            flag = word.split("=", 1)[0]
            if flag.startswith("--") and flag not in known:
                problems.append(f"opx-learning {' '.join(path)}: no option {flag}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for target in _LINK.findall(page.read_text()):
        if "://" in target or target.startswith("mailto:"):
            continue
        if not (page.parent / target).resolve().is_relative_to(ROOT):
            continue  # outside the repository: nothing in it to check
        if not (page.parent / target).exists():
            broken.append(target)
    assert not broken, f"{page.name}: broken links {broken}"


def test_readme_is_a_front_page() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; the manual belongs under docs/"


def _layout(page: Path) -> tuple[set[str], dict[str, set[str]]]:
    """The "Package layout" block of a page: names on its top-level lines, and the modules listed under each folder."""
    block = page.read_text().split("## Package layout", 1)[1].split("```", 2)[1]
    top: set[str] = set()
    listed: dict[str, set[str]] = {}
    folder = ""
    for line in block.splitlines():
        if re.match(r"^  \S", line):
            top.update(re.findall(r"(?<![\w.])(\w+/|\w+\.py)(?![\w.])", line))
            folder = line.split()[0]
        elif line.startswith("    "):
            listed.setdefault(folder, set()).update(re.findall(r"\b\w+\.py\b", line))
    return top, listed


@pytest.mark.parametrize("page", [ROOT / "README.md", ROOT / "docs" / "configuration.md"], ids=lambda p: p.name)
def test_package_layout_matches_the_folders(page: Path) -> None:
    package = ROOT / "opx_learning"
    entries = {
        f"{path.name}/" if path.is_dir() else path.name
        for path in package.iterdir()
        if path.name not in ("__init__.py", "__pycache__") and (path.is_dir() or path.suffix == ".py")
    }
    top, listed = _layout(page)
    assert top == entries, f"{page.name}: missing {sorted(entries - top)}, not in the package {sorted(top - entries)}"
    for folder in ("core/", "defs/", "app/"):
        modules = {path.name for path in (package / folder).glob("*.py") if path.name != "__init__.py"}
        found = listed.get(folder, set())
        assert found == modules, f"{page.name} {folder}: missing {sorted(modules - found)}, not there {sorted(found - modules)}"
