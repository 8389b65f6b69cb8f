"""`load_outcomes` returns the valid rows of the window and says what it rejected."""

from __future__ import annotations

from pathlib import Path

import pytest

from opx_learning.core.synthetic import generate_outcomes
from opx_learning.stores.outcomes import load_outcomes


def test_load_outcomes_logs_what_it_rejects(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    good = generate_outcomes("2026-03-01", "2026-03-02", per_day=3, seed=6).head(2)
    path = tmp_path / "outcomes.jsonl"
    good.write_ndjson(path)
    with path.open("a") as handle:
        handle.write("{broken json\n")
    with caplog.at_level("WARNING"):
        loaded = load_outcomes(path, "2026-03-01", "2026-03-02")
    assert loaded.height == 2
    assert "1 of 3 records rejected" in caplog.text and "line 3" in caplog.text
