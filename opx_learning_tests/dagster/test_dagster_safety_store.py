"""The code location names its safety store and fails closed on a home that was never initialised."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from opx_learning_tests.wiring import resource


def test_safety_resource_description_names_the_store(opx_home: Path) -> None:
    description = resource("safety").get_resource_definition().description
    assert description.startswith("Kill switch, maintenance calendar")
    assert description.endswith(f"Safety store: local: {opx_home / 'state.db'}")


def test_schedule_tick_on_an_uninitialised_home_is_skipped_with_the_way_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "never-initialised"
    monkeypatch.setenv("OPX_HOME", str(home))
    monkeypatch.setenv("OPX_BACKEND", "local")
    skip = resource("safety").schedule_gate("PATTERN_EXTRACTION", {"time_window": "DAILY"})
    assert isinstance(skip, dg.SkipReason)
    assert skip.skip_message.startswith("KILL_SWITCH_UNAVAILABLE") and "run `opx-learning init`" in skip.skip_message
    assert not (home / "state.db").exists()
