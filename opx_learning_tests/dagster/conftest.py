"""Fixtures of the Dagster tests: a real instance in a temporary DAGSTER_HOME and seeded outcomes."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from dagster._core.scheduler.instigation import InstigatorType, TickData, TickStatus

from opx_learning.app.instance import DEFAULT_DAGSTER_YAML
from opx_learning.core.synthetic import generate_outcomes
from opx_learning.stores.outcomes import outcome_store
from opx_learning_tests import wiring

SEED_START, SEED_END = "2025-09-01", "2025-12-01"
PRINCIPALS_YAML = """\
principals:
  ops-admin:
    authority: EMERGENCY_OVERRIDE
  alice:
    authority: ON_CALL_SRE
"""


@pytest.fixture
def dagster_home(opx_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh DAGSTER_HOME with the repository's local settings.

    It lives in /dev/shm when available: Dagster's SQLite storage commits (fsync) per
    event, which dominates test time on a slow disk.
    """
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else str(tmp_path)
    home = Path(tempfile.mkdtemp(prefix="opx-dagster-", dir=base))
    (home / "dagster.yaml").write_text(DEFAULT_DAGSTER_YAML)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    principals = tmp_path / "principals.yaml"
    principals.write_text(PRINCIPALS_YAML)
    monkeypatch.setenv("OPX_PRINCIPALS", str(principals))
    monkeypatch.setenv("OPX_PRINCIPAL", "alice")
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def instance(dagster_home: Path) -> Iterator[dg.DagsterInstance]:
    """The real Dagster instance of the temporary DAGSTER_HOME."""
    with dg.DagsterInstance.get() as current:
        yield current


@pytest.fixture
def seeded(dagster_home: Path) -> pl.DataFrame:
    """Three months of synthetic outcomes (Sep-Nov 2025, October overconfident) in the outcome store."""
    frame = generate_outcomes(SEED_START, SEED_END, per_day=40, seed=7, overconfident_months=["2025-10"])
    outcome_store(wiring.settings()).write(frame)
    return frame


def daemon_tick(instance: dg.DagsterInstance, schedule_name: str, timestamp: float) -> int:
    """Store the tick the schedule daemon stores (STARTED) before it evaluates a schedule; return its id."""
    tick = instance.create_tick(
        TickData(
            instigator_origin_id=f"origin-{schedule_name}",
            instigator_name=schedule_name,
            instigator_type=InstigatorType.SCHEDULE,
            status=TickStatus.STARTED,
            timestamp=timestamp,
            selector_id=f"selector-{schedule_name}",
        )
    )
    return tick.tick_id


def automation_tick(instance: dg.DagsterInstance, reserved: list[str]) -> int:
    """Store the tick the asset daemon stores for `late_outcomes_automation`, with the run ids it reserved."""
    tick = instance.create_tick(
        TickData(
            instigator_origin_id="origin-late_outcomes_automation",
            instigator_name="late_outcomes_automation",
            instigator_type=InstigatorType.SENSOR,
            status=TickStatus.STARTED,
            timestamp=time.time(),
            selector_id="selector-late_outcomes_automation",
            reserved_run_ids=reserved,
        )
    )
    return tick.tick_id
