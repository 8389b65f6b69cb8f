"""`scan_outcomes`: a window of a store as a lazy frame that the core computes on without loading it."""

from __future__ import annotations

from pathlib import Path

import polars as pl

import opx_learning as opx
from opx_learning.core.synthetic import generate_outcomes
from opx_learning.stores.outcomes import LocalOutcomeStore, load_outcomes, scan_outcomes

WINDOW = ("2026-03-03", "2026-03-06T23:59:59.999Z")


def test_a_store_window_is_lazy_and_equals_the_loaded_window(tmp_path: Path) -> None:
    frame = generate_outcomes("2026-03-01", "2026-03-10", per_day=150, seed=4)
    store = LocalOutcomeStore(tmp_path / "outcomes")
    store.write(frame)
    for source in (store, tmp_path / "outcomes", str(tmp_path / "outcomes")):
        lazy = scan_outcomes(source, *WINDOW)
        assert isinstance(lazy, pl.LazyFrame)
        loaded = load_outcomes(source, *WINDOW)
        assert lazy.collect().sort("outcome_id").equals(loaded.sort("outcome_id"))
    inside = frame.filter(
        (pl.col("recorded_at") >= pl.datetime(2026, 3, 3, time_zone="UTC"))
        & (pl.col("recorded_at") < pl.datetime(2026, 3, 7, time_zone="UTC"))
    )
    assert loaded.height == inside.height > 0
    lazy = opx.scan_outcomes(store, *WINDOW)
    assert opx.extract_patterns(lazy, *WINDOW).equals(opx.extract_patterns(loaded, *WINDOW))
    assert opx.calibrate(lazy, *WINDOW) == opx.calibrate(loaded, *WINDOW)


def test_records_and_files_are_validated_then_windowed(tmp_path: Path) -> None:
    frame = generate_outcomes("2026-03-01", "2026-03-10", per_day=20, seed=5)
    path = tmp_path / "outcomes.jsonl"
    frame.write_ndjson(path)
    with path.open("a") as handle:
        handle.write('{"outcome_id": "bad", "recorded_at": "2026-03-04T00:00:00Z"}\n')
    lazy = scan_outcomes(path, *WINDOW)
    assert isinstance(lazy, pl.LazyFrame)
    assert lazy.collect().equals(load_outcomes(path, *WINDOW))
    assert "bad" not in lazy.collect()["outcome_id"].to_list()
