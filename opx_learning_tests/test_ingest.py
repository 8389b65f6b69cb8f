"""`opx-learning ingest` and `opx.ingest`: formats, rejections, idempotence on every backend, notices."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import polars as pl
import pytest
from click.testing import CliRunner

import opx_learning as opx
from opx_learning.cli.main import cli, main
from opx_learning.core.windows import Window
from opx_learning.safety.dynamo_backend import create_tables
from opx_learning.stores.outcomes import (
    DynamoOutcomeStore,
    LocalOutcomeStore,
    S3OutcomeStore,
)
from opx_learning_tests import wiring
from opx_learning_tests.exports import record

JAN5, JAN6, JAN7 = "2026-01-05", "2026-01-06", "2026-01-07"
ALL_JANUARY = Window(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC))


def export_with_bad_rows(path: Path) -> Path:
    """10 lines: 5 valid (3 on Jan 5, 2 on Jan 6) and 5 bad ones, each for a different reason."""
    rows = [
        json.dumps(record("o-1", JAN5, 8)),
        json.dumps(record("o-2", JAN5, 9)),
        json.dumps(record("o-3", JAN6, 10)),
        json.dumps(record("bad-ttd", JAN6, 11, ttd=-5)),
        json.dumps(record("o-4", JAN5, 23)),
        json.dumps(record("bad-both", JAN6, 12, falsePositive=True)),
        "{this is not json",
        json.dumps(record("o-1", JAN5, 8, incidentId="inc-other")),
        json.dumps(record("o-5", JAN6, 13, predictedConfidence=None, humanAssessment=None)),
        json.dumps(record("", JAN6, 14, outcomeId=None)),
    ]
    path.write_text("\n".join(rows) + "\n")
    return path


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def ids_by_day(frame: pl.DataFrame) -> dict[str, list[str]]:
    days = frame.with_columns(pl.col("recorded_at").dt.date().cast(pl.String).alias("day"))
    return {day: sorted(part["outcome_id"].to_list()) for (day,), part in sorted(days.partition_by("day", as_dict=True).items())}


EXPECTED_DAYS = {JAN5: ["o-1", "o-2", "o-4"], JAN6: ["o-3", "o-5"]}
EXPECTED_REASONS = {
    "ttd_ms: negative": 1,
    "true_positive/false_positive: both true": 1,
    "line: invalid JSON": 1,
    "outcome_id: duplicate in input": 1,
    "outcome_id: missing": 1,
}


def assert_first_ingest(summary: dict[str, Any]) -> None:
    assert (summary["read"], summary["written"], summary["duplicates"], summary["rejected"]) == (10, 5, 0, 5)
    assert summary["days"] == {JAN5: 3, JAN6: 2}
    assert summary["rejected_by_reason"] == EXPECTED_REASONS
    rejected = [json.loads(line) for line in Path(summary["rejected_file"]).read_text().splitlines()]
    assert len(rejected) == 5
    assert {row["outcome_id"] for row in rejected} == {"bad-ttd", "bad-both", "o-1", None}
    assert all(row["reason"] and row["file"].endswith("export.jsonl") for row in rejected)
    assert json.loads(Path(summary["report_file"]).read_text())["rejected_by_reason"] == EXPECTED_REASONS


def assert_second_ingest(summary: dict[str, Any]) -> None:
    assert (summary["read"], summary["written"], summary["duplicates"], summary["rejected"]) == (10, 0, 5, 5)
    assert summary["read"] == summary["written"] + summary["duplicates"] + summary["rejected"]
    assert summary["days"] == {}


def test_camelcase_export_with_bad_rows_lands_by_day_once(opx_home: Path, tmp_path: Path) -> None:
    export = export_with_bad_rows(tmp_path / "export.jsonl")
    code, out, err = run("ingest", str(export), "--json")
    assert code == 0, out + err
    first = json.loads(out)
    assert_first_ingest(first)
    assert first["report_dir"].startswith(str(opx_home / "ingest"))

    store = LocalOutcomeStore(opx_home / "outcomes")
    assert [day.isoformat() for day in store.days()] == [JAN5, JAN6]
    day_files = {day: pl.read_parquet(store.root / f"recorded_date={day}" / "part-0.parquet") for day in (JAN5, JAN6)}
    assert {day: sorted(frame["outcome_id"].to_list()) for day, frame in day_files.items()} == EXPECTED_DAYS
    o5 = day_files[JAN6].filter(pl.col("outcome_id") == "o-5").row(0, named=True)
    assert o5["predicted_confidence"] is None and o5["ttr_ms"] == 600000.0 and o5["root_cause"] == "db pool"
    before = {day: (store.root / f"recorded_date={day}" / "part-0.parquet").read_bytes() for day in (JAN5, JAN6)}

    code, out, err = run("ingest", str(export), "--json")
    assert code == 0, out + err
    second = json.loads(out)
    assert_second_ingest(second)
    assert second["report_dir"] != first["report_dir"]
    after = {day: (store.root / f"recorded_date={day}" / "part-0.parquet").read_bytes() for day in (JAN5, JAN6)}
    assert after == before

    code, out, _ = run("ingest", str(export))
    assert code == 0
    assert out.startswith("Read 10 rows from 1 file: 0 new, 5 duplicate, 0 conflicting, 5 rejected.\n")
    assert "Rejected rows: " in out and "rejected.jsonl" in out


def test_dynamodb_conditional_puts_never_write_an_id_twice(aws_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPX_BACKEND", "aws")
    code, out, err = run("aws", "init", "--outcomes-table")
    assert code == 0, out + err
    table = boto3.resource("dynamodb", region_name="us-east-1").Table("opx-outcomes")
    # Stored earlier by the platform under another day: must be left exactly as it is.
    table.put_item(Item={"outcomeId": "o-2", "recordedDate": JAN7, "recordedAt": f"{JAN7}T00:00:00.000Z", "marker": "kept"})

    export = export_with_bad_rows(tmp_path / "export.jsonl")
    code, out, err = run("ingest", str(export), "--json", "--principal", "analyst")
    assert code == 0, out + err
    first = json.loads(out)
    assert (first["read"], first["written"], first["duplicates"], first["rejected"]) == (10, 4, 1, 5)
    assert first["days"] == {JAN5: 2, JAN6: 2}
    assert first["store"] == "dynamodb://opx-outcomes"
    assert first["principal"] == "analyst"
    assert table.get_item(Key={"outcomeId": "o-2"})["Item"]["marker"] == "kept"

    stored = DynamoOutcomeStore("opx-outcomes", region="us-east-1").read(ALL_JANUARY)  # the TimeIndex read path
    assert ids_by_day(stored) == {JAN5: ["o-1", "o-4"], JAN6: ["o-3", "o-5"]}
    item = table.get_item(Key={"outcomeId": "o-1"})["Item"]
    assert item["recordedDate"] == JAN5 and item["classification"]["truePositive"] is True

    code, out, err = run("ingest", str(export), "--json")
    assert code == 0, out + err
    second = json.loads(out)
    assert (second["written"], second["duplicates"], second["rejected"]) == (0, 5, 5)
    assert table.scan(Select="COUNT")["Count"] == 5


def test_s3_parquet_reads_the_days_existing_ids(aws_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="outcomes")
    monkeypatch.setenv("OPX_BACKEND", "aws")
    monkeypatch.setenv("OPX_OUTCOMES_S3_URI", "s3://outcomes/exports")
    create_tables(wiring.settings())  # the config table holds the manifest of stored objects
    export = export_with_bad_rows(tmp_path / "export.jsonl")
    first = opx.ingest(export, settings=wiring.settings()).to_dict()
    assert_first_ingest(first)
    assert first["store"] == "s3://outcomes/exports"
    second = opx.ingest(export, settings=wiring.settings()).to_dict()
    assert_second_ingest(second)
    stored = S3OutcomeStore("s3://outcomes/exports").read(ALL_JANUARY)
    assert stored.height == 5 and ids_by_day(stored) == EXPECTED_DAYS


@pytest.mark.parametrize("backend", ["local", "dynamodb"])
def test_a_concurrent_writer_of_the_same_id_wins_and_counts_as_duplicate(
    backend: str, opx_home: Path, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend == "dynamodb":
        request.getfixturevalue("aws_env")
        monkeypatch.setenv("OPX_BACKEND", "aws")
        assert run("aws", "init", "--outcomes-table")[0] == 0
    store = opx_learning_store()
    other = pl.DataFrame([record("o-3", JAN6, 10, rootCause="written by the platform")])
    other_valid = opx.validate_outcomes(other).valid

    def meanwhile(done: int, total: int) -> None:
        # After the first day is written, another writer stores o-3 (a row of the second day).
        if done == 3:
            store.write(other_valid)

    report = opx.ingest(
        export_with_bad_rows(tmp_path / "export.jsonl"), store=store, settings=wiring.settings(), progress=meanwhile
    )
    assert (report.read, report.written, report.duplicates, report.rejected) == (10, 4, 1, 5)
    assert report.days == {JAN5: 3, JAN6: 1}
    stored = store.read(ALL_JANUARY)
    assert stored.height == 5
    assert stored.filter(pl.col("outcome_id") == "o-3")["root_cause"].to_list() == ["written by the platform"]


def opx_learning_store() -> Any:
    from opx_learning.stores.outcomes import outcome_store

    return outcome_store(wiring.settings())


def canonical_rows() -> pl.DataFrame:
    records = [record("c-1", JAN5, 1), record("c-2", JAN6, 2), record("c-3", JAN7, 3, ttr=-1)]
    return pl.DataFrame(
        {
            "outcome_id": [r["outcomeId"] for r in records],
            "incident_id": [r["incidentId"] for r in records],
            "service": ["checkout"] * 3,
            "recorded_at": [r["recordedAt"] for r in records],
            "validated_at": [r["validatedAt"] for r in records],
            "true_positive": [True, False, True],
            "false_positive": [False, True, False],
            "root_cause": ["db pool", "noise", "disk"],
            "resolution_type": ["FIXED", "FALSE_ALARM", "FIXED"],
            "ttd_ms": [1.0, 2.0, 3.0],
            "ttr_ms": [10.0, 20.0, -1.0],
            "predicted_confidence": [0.9, None, 0.2],
            "human_confidence_rating": [None, None, None],
        }
    )


@pytest.mark.parametrize("kind", ["json", "parquet", "csv", "csv-camel", "ndjson"])
def test_each_format_is_read(opx_home: Path, tmp_path: Path, kind: str) -> None:
    frame = canonical_rows()
    if kind == "json":
        path = tmp_path / "export.json"
        path.write_text(json.dumps([record("c-1", JAN5, 1), record("c-2", JAN6, 2, truePositive=False, falsePositive=True,
                                                                   predictedConfidence=None),
                                    record("c-3", JAN7, 3, ttr=-1)]))
    elif kind == "parquet":
        path = tmp_path / "export.parquet"
        frame.write_parquet(path)
    elif kind == "csv":
        path = tmp_path / "export.csv"
        frame.write_csv(path)
    elif kind == "csv-camel":
        path = tmp_path / "export.csv"
        path.write_text(
            "outcomeId,incidentId,service,recordedAt,validatedAt,classification.truePositive,classification.falsePositive,"
            "classification.rootCause,classification.resolutionType,timing.ttd,timing.ttr,predictedConfidence\n"
            f"c-1,i-1,checkout,{JAN5}T01:00:00Z,{JAN5}T02:00:00Z,true,false,db pool,FIXED,1,10,0.9\n"
            f"c-2,i-2,checkout,{JAN6}T02:00:00Z,{JAN6}T03:00:00Z,false,true,noise,FALSE_ALARM,2,20,\n"
            f"c-3,i-3,checkout,{JAN7}T03:00:00Z,{JAN7}T04:00:00Z,true,false,disk,FIXED,3,-1,0.2\n"
        )
    else:
        path = tmp_path / "export.ndjson"
        frame.write_ndjson(path)
    report = opx.ingest(path, settings=wiring.settings())
    assert isinstance(report, opx.IngestReport)
    assert (report.read, report.written, report.duplicates, report.rejected) == (3, 2, 0, 1)
    assert report.rejected_by_reason == {"ttr_ms: negative": 1}
    stored = LocalOutcomeStore(opx_home / "outcomes").read(ALL_JANUARY)
    assert ids_by_day(stored) == {JAN5: ["c-1"], JAN6: ["c-2"]}
    assert stored.filter(pl.col("outcome_id") == "c-2")["predicted_confidence"].to_list() == [None]
    assert stored.filter(pl.col("outcome_id") == "c-2")["false_positive"].to_list() == [True]


def test_files_that_cannot_be_ingested_exit_2_and_write_nothing(
    opx_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = export_with_bad_rows(tmp_path / "export.jsonl")
    unknown = tmp_path / "export.xlsx"
    unknown.write_text("x")
    fake_parquet = tmp_path / "export.parquet"
    fake_parquet.write_text("outcome_id,service\n1,a\n")
    csv_lines = tmp_path / "lines.jsonl"
    csv_lines.write_text("outcome_id,service\n1,a\n")
    no_id = tmp_path / "no_id.csv"
    canonical_rows().drop("outcome_id").write_csv(no_id)
    cases = {
        unknown: "unsupported extension '.xlsx'",
        tmp_path / "missing.jsonl": "no such file",
        fake_parquet: "cannot be read as parquet",
        csv_lines: "no row is a JSON object",
        no_id: "required field 'outcome_id' (camelCase 'outcomeId') is missing from every row",
    }
    for path, message in cases.items():
        code, out, err = run("ingest", str(good), str(path))
        assert code == 2, (path, out, err)
        assert str(path) in err and message in err, err
        assert "Traceback" not in out + err
    # Through the console entry point, --json errors are JSON on stdout.
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main(["ingest", str(no_id), "--json"])
    assert exited.value.code == 2
    assert cases[no_id] in json.loads(capsys.readouterr().out)["message"]
    assert LocalOutcomeStore(opx_home / "outcomes").days() == []
    assert not (opx_home / "ingest").exists()


def test_dry_run_writes_nothing_and_says_what_it_would_do(opx_home: Path, tmp_path: Path) -> None:
    export = export_with_bad_rows(tmp_path / "export.jsonl")
    code, out, err = run("ingest", str(export), "--dry-run")
    assert code == 0, out + err
    assert "Would write 5 new outcomes to" in out and f"  {JAN5}  3\n  {JAN6}  2\n" in out
    assert out.rstrip().endswith("Dry run: nothing was written.")
    assert LocalOutcomeStore(opx_home / "outcomes").days() == []
    assert not (opx_home / "ingest").exists()

    opx.ingest(export, rejected_dir=tmp_path / "report", settings=wiring.settings())
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == ["conflicts.jsonl", "rejected.jsonl", "report.json"]
    code, out, _ = run("ingest", str(export), "--dry-run", "--json")
    summary = json.loads(out)
    assert summary["dry_run"] is True and (summary["written"], summary["duplicates"]) == (0, 5)
    assert summary["report_dir"] is None


def test_rows_before_partitions_start_are_stored_with_a_warning(
    opx_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPX_PARTITIONS_START", JAN6)
    export = export_with_bad_rows(tmp_path / "export.jsonl")
    code, out, err = run("ingest", str(export))
    assert code == 0, out + err
    assert (
        f"Warning: 3 rows land before OPX_PARTITIONS_START {JAN6} (first day {JAN5}); no partition covers them, "
        f"so they cannot be backfilled until OPX_PARTITIONS_START is set to {JAN5} or earlier." in " ".join(err.split())
    )
    assert LocalOutcomeStore(opx_home / "outcomes").days()[0].isoformat() == JAN5
    code, out, err = run("ingest", str(export), "--json")
    assert json.loads(out)["before_partitions_start"] is None  # nothing new landed
    monkeypatch.setenv("OPX_PARTITIONS_START", "2025-01-01")
    path = tmp_path / "late.jsonl"
    path.write_text(json.dumps(record("late", JAN7)) + "\n")
    assert json.loads(run("ingest", str(path), "--json")[1])["before_partitions_start"] is None


def test_ingest_into_materialized_days_names_the_stale_partitions(opx_home: Path, tmp_path: Path) -> None:
    import dagster as dg

    first = tmp_path / "first.jsonl"
    first.write_text("\n".join(json.dumps(record(f"a-{i}", JAN5, i)) for i in range(6)) + "\n")
    assert run("ingest", str(first))[0] == 0
    code, out, err = run("trigger", "extract-patterns", "--start", JAN5, "--end", JAN6, "--principal", "analyst")
    assert code == 0, out + err

    later = tmp_path / "later.jsonl"
    later.write_text(json.dumps(record("b-1", JAN5, 20)) + "\n" + json.dumps(record("b-2", JAN7, 1)) + "\n")
    code, out, _ = run("ingest", str(later), "--dry-run")
    assert "that would be stale:\n  daily_outcomes: 2026-01-05\n  pattern_summaries_daily: 2026-01-05\n" in out

    code, out, err = run("ingest", str(later))
    assert code == 0, out + err
    assert "that are now stale:\n  daily_outcomes: 2026-01-05\n  pattern_summaries_daily: 2026-01-05\n" in out
    assert f"Re-run them with:\n  opx-learning trigger extract-patterns --start {JAN5} --end {JAN6}\n" in out

    assert "New data versions observed for 2 day(s): Dagster shows them unsynced" in out

    # Each changed day's data version is the SHA-256 of its stored file (hashed here independently).
    def digest(day: str) -> str:
        path = opx_home / "outcomes" / f"recorded_date={day}" / "part-0.parquet"
        return hashlib.sha256(path.read_bytes()).hexdigest()

    instance = dg.DagsterInstance.get()
    try:
        observations = instance.fetch_observations(dg.AssetKey("outcome_days"), limit=10).records
        versions = [(r.partition_key, r.asset_observation.tags["dagster/data_version"]) for r in observations]
        # The first ingest had no Dagster instance to observe into; the second observed both days it wrote.
        assert sorted(versions) == [(JAN5, digest(JAN5)), (JAN7, digest(JAN7))]
    finally:
        instance.dispose()

    summary = json.loads(run("ingest", str(later), "--json")[1])
    assert summary["written"] == 0 and summary["stale"] is None
    instance = dg.DagsterInstance.get()
    try:  # the same content again: no new data version
        assert len(instance.fetch_observations(dg.AssetKey("outcome_days"), limit=10).records) == 2
    finally:
        instance.dispose()


def test_large_inputs_show_a_progress_bar(opx_home: Path, tmp_path: Path) -> None:
    frame = opx.generate_outcomes("2026-01-01", "2026-01-03", per_day=12_000, seed=1)
    assert frame.height >= 20_000
    path = tmp_path / "big.parquet"
    frame.write_parquet(path)
    code, out, err = run("ingest", str(path))
    assert code == 0, out + err
    assert "Writing outcomes" in err
    assert out.startswith(f"Read {frame.height} rows from 1 file: {frame.height} new, 0 duplicate, 0 conflicting, 0 rejected.")
    code, out, err = run("ingest", str(path), "--json")
    assert "Writing outcomes" not in err and json.loads(out)["duplicates"] == frame.height


@pytest.mark.parametrize("backend", ["local", "s3", "dynamodb"])
def test_an_id_stored_with_different_content_is_a_conflict_listed_with_both_versions(
    backend: str, opx_home: Path, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend != "local":
        request.getfixturevalue("aws_env")
        monkeypatch.setenv("OPX_BACKEND", "aws")
    if backend == "s3":
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="outcomes")
        monkeypatch.setenv("OPX_OUTCOMES_S3_URI", "s3://outcomes/exports")
        create_tables(wiring.settings())
    if backend == "dynamodb":
        assert run("aws", "init", "--outcomes-table")[0] == 0
    first = tmp_path / "first.jsonl"
    first.write_text("".join(json.dumps(record(f"o-{i}", JAN5, i)) + "\n" for i in (1, 2, 3)))
    code, out, err = run("ingest", str(first), "--json")
    assert code == 0, out + err
    assert json.loads(out)["written"] == 3

    second = tmp_path / "second.jsonl"
    rows = [
        record("o-1", JAN5, 1),  # same content: a duplicate
        record("o-2", JAN5, 2, rootCause="cache stampede", ttd=90000),  # different content: a conflict
        record("o-9", JAN6, 9),  # new
        record("o-3", JAN5, 3, service=""),  # rejected before any comparison
    ]
    second.write_text("".join(json.dumps(row) + "\n" for row in rows))
    code, out, err = run("ingest", str(second), "--json", "--rejected-dir", str(tmp_path / "report"))
    assert code == 0, out + err
    summary = json.loads(out)
    assert (summary["read"], summary["written"], summary["duplicates"], summary["conflicts"], summary["rejected"]) == (
        4, 1, 1, 1, 1,
    )
    assert summary["conflicts_file"] == str(tmp_path / "report" / "conflicts.jsonl")
    conflicts = [json.loads(line) for line in Path(summary["conflicts_file"]).read_text().splitlines()]
    assert len(conflicts) == 1
    conflict = conflicts[0]
    assert conflict["outcome_id"] == "o-2" and conflict["file"] == str(second)
    assert (conflict["stored"]["root_cause"], conflict["stored"]["ttd_ms"]) == ("db pool", 60000.0)
    assert (conflict["incoming"]["root_cause"], conflict["incoming"]["ttd_ms"]) == ("cache stampede", 90000.0)
    assert conflict["stored"]["service"] == conflict["incoming"]["service"] == "checkout"

    store = opx_learning_store()
    stored = store.read(ALL_JANUARY)
    assert sorted(stored["outcome_id"].to_list()) == ["o-1", "o-2", "o-3", "o-9"]
    assert stored.filter(pl.col("outcome_id") == "o-2")["root_cause"].to_list() == ["db pool"]

    code, out, _ = run("ingest", str(second))
    assert code == 0
    assert out.startswith("Read 4 rows from 1 file: 0 new, 2 duplicate, 1 conflicting, 1 rejected.\n")
    assert "Conflicting 1 rows: their outcome_id is already stored with different content; not written." in out
    assert "Conflicts (stored and incoming versions): " in out and "conflicts.jsonl" in out


def test_bom_undecodable_and_deeply_nested_lines_are_rejected_with_their_line_numbers(
    opx_home: Path, tmp_path: Path
) -> None:
    good = [json.dumps(record(f"o-{i}", JAN5, i)).encode() for i in range(4)]
    deep = b'{"outcomeId": "deep", "extra": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    undecodable = json.dumps(record("u-1", JAN5, 7)).encode().replace(b"checkout", b"check\xffout")
    lines = [good[0], deep, good[1], undecodable, b"", good[2], b'{"outcomeId": "cut", "serv', good[3]]
    export = tmp_path / "damaged.jsonl"
    export.write_bytes(b"\xef\xbb\xbf" + b"\n".join(lines) + b"\n")
    code, out, err = run("ingest", str(export), "--json")
    assert code == 0, out + err
    summary = json.loads(out)
    assert (summary["read"], summary["written"], summary["rejected"]) == (7, 4, 3)
    rejected = [json.loads(line) for line in Path(summary["rejected_file"]).read_text().splitlines()]
    assert [row["line"] for row in rejected] == [2, 4, 7]
    assert rejected[0]["reason"].startswith("line 2: nested deeper than 64 levels")
    assert rejected[1]["reason"].startswith("line 4: not valid UTF-8")
    assert rejected[2]["reason"].startswith("line 7: invalid JSON")
    assert summary["rejected_by_reason"] == {"line: invalid JSON": 1, "line: nested too deep": 1, "line: not UTF-8": 1}
    stored = opx_learning_store().read(ALL_JANUARY)
    assert sorted(stored["outcome_id"].to_list()) == ["o-0", "o-1", "o-2", "o-3"]


def test_camelcase_export_with_rows_rejected_for_different_reasons_ingests_its_valid_rows(
    opx_home: Path, tmp_path: Path
) -> None:
    """Read in several chunks, rows rejected for different reasons used to make polars panic."""
    rows = [record(f"o-{i}", JAN5, i % 24) for i in range(1527)]
    rows[209]["service"] = ""
    rows[650]["predictedConfidence"] = 1.7
    rows[1210]["service"] = " "
    export = tmp_path / "export.jsonl"
    export.write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = opx.validate_outcomes(export)
    assert result.valid.height == 1524
    assert result.rejected["line"].to_list() == [210, 651, 1211]
    code, out, err = run("ingest", str(export), "--json")
    assert code == 0, out + err
    summary = json.loads(out)
    assert (summary["written"], summary["rejected"]) == (1524, 3)
    assert summary["rejected_by_reason"] == {"service: empty": 2, "predicted_confidence: out of range": 1}


def test_ingest_and_status_find_the_homes_own_instance_without_dagster_home(
    opx_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from opx_learning.app.instance import ensure_dagster_home

    monkeypatch.setenv("DAGSTER_HOME", str(opx_home / "dagster_home"))
    instance_dir = ensure_dagster_home(wiring.settings())  # `<home>/dagster_home`, as `opx-learning demo` makes it
    monkeypatch.delenv("DAGSTER_HOME")  # a new shell: only OPX_HOME is set
    export = tmp_path / "late.jsonl"
    export.write_text("\n".join(json.dumps(record(f"o-{i}", JAN5, i)) for i in range(3)) + "\n")
    result = CliRunner().invoke(cli, ["ingest", str(export), "--json"])
    assert result.exception is None and result.exit_code == 0, result.output
    assert json.loads(result.stdout)["written"] == 3
    assert "RUN_START" not in result.output  # the observation it records is quiet, as every command's run is
    result = CliRunner().invoke(cli, ["status", "--json"])
    assert result.exception is None and result.exit_code == 0, result.output
    assert json.loads(result.stdout)["monitors_source"] == f"Dagster instance {instance_dir}"
    # A snapshot's plan reads the instance's materialized partitions: the same instance, no traceback.
    result = CliRunner().invoke(cli, ["trigger", "snapshot", "--type", "daily", "--start", JAN5, "--end", JAN6,
                                      "--principal", "alice"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "DAGSTER_HOME is not set" not in result.output
