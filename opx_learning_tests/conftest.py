"""Shared fixtures: an isolated OPX_HOME / DAGSTER_HOME per test."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def opx_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh local-backend home (and Dagster home) for one test."""
    home = tmp_path / "opx"
    home.mkdir()
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    monkeypatch.setenv("OPX_HOME", str(home))
    monkeypatch.setenv("OPX_BACKEND", "local")
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    monkeypatch.delenv("OPX_PRINCIPALS", raising=False)
    return home
