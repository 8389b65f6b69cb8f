"""opx_learning inside a team's own code location: prefixed, configured by arguments, two homes side by side."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

import opx_learning as opx
from opx_learning.backends import guard_for
from opx_learning.safety.models import AuthorityType, Principal
from opx_learning.safety.state import initialise
from opx_learning.stores.outcomes import outcome_store

DAY = "2025-10-02"


def _home(root: Path, name: str, per_day: int, seed: int) -> tuple[opx.Settings, pl.DataFrame]:
    settings = opx.Settings(home=root / name, partitions_start=date(2025, 1, 1))
    initialise(settings)
    frame = opx.generate_outcomes("2025-09-01", "2025-10-10", per_day=per_day, seed=seed)
    outcome_store(settings).write(frame)
    return settings, frame


def _team_defs(stored: list[str]) -> dg.Definitions:
    class TeamIOManager(dg.IOManager):
        def handle_output(self, context: dg.OutputContext, obj: object) -> None:
            stored.append(f"{context.asset_key.to_user_string()}={obj}")

        def load_input(self, context: dg.InputContext) -> object:
            return None

    @dg.asset
    def team_asset() -> int:
        return 42

    return dg.Definitions(assets=[team_asset], resources={"io_manager": TeamIOManager()})


def _expected_total(frame: pl.DataFrame) -> int:
    day = frame.filter(pl.col("recorded_at").dt.strftime("%Y-%m-%d") == DAY)
    return opx.validate_outcomes(day).valid.height


@pytest.fixture
def no_opx_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dg.DagsterInstance:
    for name in list(os.environ):
        if name.startswith("OPX_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))  # a stray ~/.opx would be visible, never used
    return dg.DagsterInstance.ephemeral()


def test_two_homes_merge_with_a_team_location_and_keep_their_own_state(tmp_path: Path, no_opx_env: dg.DagsterInstance) -> None:
    instance = no_opx_env
    first, first_frame = _home(tmp_path, "first", per_day=20, seed=3)
    second, second_frame = _home(tmp_path, "second", per_day=35, seed=4)
    stored: list[str] = []
    merged = dg.Definitions.merge(
        _team_defs(stored),
        opx.build_defs(first, key_prefix="first"),
        opx.build_defs(second, key_prefix="second"),
    )
    dg.Definitions.validate_loadable(merged)
    team_job = merged.resolve_implicit_global_asset_job_def().get_subset(asset_selection={dg.AssetKey("team_asset")})
    assert team_job.execute_in_process(instance=instance).success
    assert stored == ["team_asset=42"]  # the team's own IO manager stored the team's asset

    results = {}
    for prefix in ("first", "second"):
        job = merged.resolve_job_def(f"{prefix}_daily_patterns_job")
        results[prefix] = job.execute_in_process(instance=instance, partition_key=DAY, raise_on_error=False)
        assert results[prefix].success
    for settings, frame in ((first, first_frame), (second, second_frame)):
        summary = pl.read_parquet(settings.home / "assets" / "pattern_summaries_daily" / f"{DAY}.parquet")
        total = summary.filter(pl.col("service") == "ALL")["total_incidents"][0]
        assert total == _expected_total(frame)
    assert _expected_total(first_frame) != _expected_total(second_frame)
    key = dg.AssetKey(["second", "pattern_summaries_daily"])
    assert instance.get_materialized_partitions(key) == {DAY}
    assert not (tmp_path / "user" / ".opx").exists()

    admin = Principal("ops-admin", AuthorityType.EMERGENCY_OVERRIDE)
    guard_for(second).kill_switch.disable(admin, "incident on the second home")
    other_day = "2025-10-03"
    ran = {
        prefix: merged.resolve_job_def(f"{prefix}_daily_patterns_job").execute_in_process(
            instance=instance, partition_key=other_day, raise_on_error=False
        )
        for prefix in ("first", "second")
    }
    assert (first.home / "assets" / "pattern_summaries_daily" / f"{other_day}.parquet").exists()
    assert not (second.home / "assets" / "pattern_summaries_daily" / f"{other_day}.parquet").exists()
    assert other_day in instance.get_materialized_partitions(dg.AssetKey(["first", "pattern_summaries_daily"]))
    assert other_day not in instance.get_materialized_partitions(key)
    assert ran["second"].success  # a skip is not a failure
    second_audit = guard_for(second).audit.recent(5)
    skipped = [r for r in second_audit if r.operation_type.value == "PATTERN_EXTRACTION" and r.status.value == "SKIPPED"]
    assert skipped and "KILL_SWITCH_ACTIVE" in str(skipped[0].results)
    first_audit = guard_for(first).audit.recent(5)
    assert all(r.status.value == "SUCCESS" for r in first_audit if r.operation_type.value == "PATTERN_EXTRACTION")


def test_every_name_the_location_defines_is_prefixed(tmp_path: Path) -> None:
    defs = opx.build_defs(opx.Settings(home=tmp_path / "home"), key_prefix="learning")
    repository = defs.get_repository_def()
    assert all(key.path[0] == "learning" for key in defs.resolve_all_asset_keys())
    assert all(name.startswith("learning_") for name in repository.job_names if not name.startswith("__"))
    assert all(s.name.startswith("learning_") for s in repository.schedule_defs)
    assert all(s.name.startswith("learning_") for s in repository.sensor_defs)
    assert all(key.startswith("learning_") for key in defs.resources or {})
    assert all(key.asset_key.path[0] == "learning" for key in defs.resolve_asset_graph().asset_check_keys)


def test_component_from_attributes_equals_build_defs(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    component = opx.OpxLearningComponent(home=home, partitions_start="2025-03-01", key_prefix="team")
    built = dg.build_defs_for_component(component)
    direct = opx.build_defs(opx.Settings(home=home, partitions_start="2025-03-01"), key_prefix="team")
    assert set(built.resolve_all_asset_keys()) == set(direct.resolve_all_asset_keys())
    assert all(key.path[0] == "team" for key in built.resolve_all_asset_keys())
    assert built.resources["team_safety"].home == home


def test_bad_settings_and_prefix_are_errors_naming_the_value(tmp_path: Path) -> None:
    with pytest.raises(opx.ConfigurationError, match="'nope'"):
        opx.Settings(backend="nope")
    with pytest.raises(opx.ConfigurationError, match="'2025-13-01'"):
        opx.Settings(partitions_start="2025-13-01")
    with pytest.raises(opx.ConfigurationError, match="key_prefix: '1-bad'"):
        opx.build_defs(opx.Settings(home=tmp_path), key_prefix="1-bad")


def test_component_attributes_are_the_settings_fields_with_their_defaults() -> None:
    from dataclasses import fields

    attributes = opx.OpxLearningComponent.model_fields
    assert set(attributes) == {f.name for f in fields(opx.Settings)} | {"key_prefix"}
    built = opx.OpxLearningComponent().settings()
    assert built == opx.Settings()  # every default agrees with the settings' own
