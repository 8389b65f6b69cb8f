"""`opx-learning seed` and `summary` through click's runner and one real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import boto3
import pytest
from click.testing import CliRunner

from opx_learning.cli.main import cli
from opx_learning.core.windows import Window
from opx_learning.stores.outcomes import LocalOutcomeStore, create_table, outcome_store
from opx_learning_tests import wiring


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def test_seed_writes_idempotently_and_summary_reads_it(opx_home: Path) -> None:
    code, out = run("seed", "--start", "2026-01-01", "--end", "2026-01-04", "--per-day", "120", "--json")
    assert code == 0, out
    result = json.loads(out)
    assert result["rows_written"] == result["rows_generated"] > 300
    assert (result["start"], result["end"], result["days"]) == ("2026-01-01T00:00:00.000Z", "2026-01-04T00:00:00.000Z", 3)
    assert result["store"] == str(opx_home / "outcomes")
    assert LocalOutcomeStore(opx_home / "outcomes").days()[0].isoformat() == "2026-01-01"

    code, out = run("seed", "--start", "2026-01-01", "--end", "2026-01-04", "--per-day", "120")
    assert code == 0
    assert out.startswith(f"Wrote 0 new outcomes ({result['rows_generated']} generated")

    code, out = run("summary", "--start", "2026-01-01", "--end", "2026-01-03T23:59:59.999Z", "--json")
    assert code == 0, out
    summary = json.loads(out)
    assert summary["outcome_count"] == result["rows_generated"]
    assert summary["patterns"][0]["service"] == "ALL"
    assert summary["patterns"][0]["total_incidents"] == result["rows_generated"]
    assert summary["calibration"]["outcome_count"] > 300

    code, out = run("summary", "--start", "2026-01-01", "--end", "2026-01-04")
    assert code == 0
    assert "notification-service !" in out
    assert "Calibration:" in out and "ECE" in out


def test_summary_with_too_few_outcomes_explains(opx_home: Path) -> None:
    run("seed", "--start", "2026-01-01", "--days", "1", "--per-day", "20", "--services", "order-service")
    code, out = run("summary", "--start", "2026-01-01", "--days", "1", "--service", "order-service")
    assert code == 0, out
    assert "Calibration: not computed - calibration needs at least 30 outcomes" in out
    code, out = run("summary", "--start", "2026-01-01", "--days", "1", "--json")
    assert json.loads(out)["calibration"] is None


def test_user_errors_name_field_and_value(opx_home: Path) -> None:
    code, out = run("seed", "--start", "bogus")
    assert code == 2 and "start: 'bogus'" in out
    code, out = run("seed", "--start", "2026-01-05", "--end", "2026-01-01")
    assert code == 2 and "end: 2026-01-01T00:00:00.000Z must be after start" in out
    code, out = run("seed", "--services", "a,,b", "--days", "1")
    assert code == 2 and "--services: 'a,,b'" in out
    code, out = run("summary", "--end", "later")
    assert code == 2 and "end: 'later'" in out
    assert "Traceback" not in out


def test_seed_on_aws_backend(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPX_BACKEND", "aws")
    code, out = run("seed", "--start", "2026-01-01", "--days", "1", "--per-day", "30")
    assert code == 1
    assert "opx-outcomes does not exist; create it with `opx-learning aws init --outcomes-table`" in out
    create_table(boto3.client("dynamodb", region_name="us-east-1"), "opx-outcomes")
    code, out = run("seed", "--start", "2026-01-01", "--days", "2", "--per-day", "30", "--json")
    assert code == 0, out
    written = json.loads(out)["rows_written"]
    assert outcome_store(wiring.settings()).read(Window.parse("2026-01-01", "2026-01-03")).height == written > 30


def test_seed_subprocess(opx_home: Path) -> None:
    env = {**os.environ, "OPX_HOME": str(opx_home), "OPX_BACKEND": "local"}
    done = subprocess.run(
        ["opx-learning", "seed", "--days", "3", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["days"] == 3 and result["rows_written"] > 0
    assert len(LocalOutcomeStore(opx_home / "outcomes").days()) == 3


def test_seed_refuses_an_overconfident_month_outside_the_range(opx_home: Path) -> None:
    result = CliRunner().invoke(
        cli, ["seed", "--start", "2026-03-01", "--end", "2026-03-05", "--overconfident-month", "2026-02"]
    )
    assert result.exit_code == 2
    assert "--overconfident-month: '2026-02'" in result.output
    assert not list((opx_home / "outcomes").glob("**/*.parquet"))


def test_summary_shows_empty_confidence_bands_as_dashes(opx_home: Path) -> None:
    import polars as pl

    from opx_learning.core.synthetic import generate_outcomes

    # 80 outcomes all predicted at 0.9 (band VERY_HIGH), every fourth one a false positive:
    # accuracy 60/80 = 0.75, drift 0.75 - 0.9 = -0.150; the four lower bands hold nothing.
    frame = generate_outcomes("2026-01-01", "2026-01-03", per_day=60, seed=3).head(80)
    assert frame.height == 80
    true_positive = pl.int_range(pl.len()) % 4 != 0
    frame = frame.with_columns(predicted_confidence=pl.lit(0.9), true_positive=true_positive,
                               false_positive=~true_positive)
    assert outcome_store(wiring.settings()).write(frame) == 80

    code, out = run("summary", "--start", "2026-01-01", "--end", "2026-01-03")
    assert code == 0, out
    lines = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("  ")}
    for band in ("VERY_LOW", "LOW", "MEDIUM", "HIGH"):
        assert lines[band] == [band, "n=0", "accuracy=-", "mean_conf=-", "drift=-", "INFO"]
    assert lines["VERY_HIGH"][1:5] == ["n=80", "accuracy=0.75", "mean_conf=0.90", "drift=-0.150"]

    code, out = run("summary", "--start", "2026-01-01", "--end", "2026-01-03", "--json")
    assert code == 0, out
    bands = {band["band"]: band for band in json.loads(out)["calibration"]["bands"]}
    assert [bands[name]["drift"] for name in ("VERY_LOW", "LOW", "MEDIUM", "HIGH")] == [None] * 4
    assert bands["VERY_HIGH"]["n"] == 80 and abs(bands["VERY_HIGH"]["drift"] - (-0.15)) < 1e-9
