"""The code location names its safety store and fails closed on a home that was never initialised."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from opx_learning_tests.wiring import resource


def test_safety_resource_names_the_store_in_its_configuration(opx_home: Path) -> None:
    safety = resource("safety")
    # The UI's resource page shows a resource's configuration: the home whose state.db it uses.
    assert safety.home == str(opx_home)
    assert safety.store_description == f"local: {opx_home / 'state.db'}"
    assert "SQLite" in safety.get_resource_definition().description


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
