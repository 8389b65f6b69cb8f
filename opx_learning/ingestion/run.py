"""Ingestion of outcome exports (docs/ingest.md): read, validate, write new rows by day, report the rest.

Choices beyond docs/design.md:

- Formats by extension: `.jsonl` / `.ndjson` (JSON lines), `.json` (an array of objects, or
  JSON lines), `.parquet` / `.pq`, `.csv` (read as text; nested camelCase as dotted headers such
  as `classification.truePositive`). Anything else is refused before anything is read.
- Every file is read and validated before anything is written, so a broken file (unreadable,
  wrong format, a required field absent from every row) stops the ingest with nothing written.
  A file with some bad rows keeps its good rows.
- Duplicates and conflicts: an `outcome_id` already stored with the same content, or already
  taken by an earlier file of the same ingest, counts as a duplicate; one stored with different
  content is a conflict, listed with both versions in `conflicts.jsonl`. Neither is written.
  Stored rows are read through the store's read path (checked against the manifest of stored
  objects on the Parquet stores). On the local Parquet store every stored day is checked; on
  S3 Parquet the days the input touches (the layout has no id index); on DynamoDB the whole
  table (the key is `outcomeId`; writes are conditional puts `attribute_not_exists(outcomeId)`,
  so a concurrent writer cannot make an id land twice).
- Counts add up: `read = written + duplicates + conflicts + rejected`, per ingest.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from opx_learning.config import Settings
from opx_learning.core.schema import CAMEL_CASE_PATHS, OUTCOME_COLUMNS, empty_outcomes
from opx_learning.core.validation import NULLABLE, ValidationResult, validate_outcomes
from opx_learning.core.windows import Window, day_window
from opx_learning.stores.outcomes import (
    DynamoOutcomeStore,
    LocalOutcomeStore,
    OutcomeStore,
    _plain,
    outcome_store,
    to_items,
)

Progress = Callable[[int, int], None]
"""Called with `(rows_done, rows_total)` while rows are written."""

FORMATS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
}
_BATCH_GET = 100  # DynamoDB BatchGetItem limit
_FILE_COLUMN = "file"
_INDEX_COLUMN = "__file_index"

# Reason categories, matched against the parts of a rejection reason (see core/validation.py).
_CATEGORIES: tuple[tuple[str, str], ...] = (
    ("missing (required)", "missing"),
    ("is a duplicate", "duplicate in input"),
    ("invalid JSON", "invalid JSON"),
    ("expected an object", "not an object"),
    ("nested deeper than", "nested too deep"),
    ("not valid UTF-8", "not UTF-8"),
    ("unexpected text after the array", "invalid JSON"),
    ("between elements", "invalid JSON"),
    ("is not closed", "truncated"),
    ("is before recorded_at", "before recorded_at"),
    ("both are true", "both true"),
    ("is empty after trimming", "empty"),
    ("outside the supported range", "out of bounds"),
    ("is outside [0, 1]", "out of range"),
    ("is negative", "negative"),
    ("contains control character", "control character"),
    ("has length", "length"),
    (" is not ", "wrong type"),
)
_FIELD = re.compile(r"^([A-Za-z_/]+): ")


class IngestError(ValueError):
    """An input cannot be ingested at all (unreadable, unknown format, a required field absent); names the file."""


@dataclass(frozen=True)
class FileCounts:
    """What one input file held."""

    path: str
    format: str
    read: int
    valid: int
    rejected: int


@dataclass(frozen=True)
class IngestReport:
    """The outcome of one ingest: counts, where rows went, what is now stale.

    `read == written + duplicates + conflicts + rejected`; in a dry run `written` is what would be written.
    """

    files: tuple[FileCounts, ...]
    read: int
    written: int
    duplicates: int
    rejected: int
    conflicts: int
    rejected_by_reason: dict[str, int]
    days: dict[str, int]
    store: str
    dry_run: bool
    principal: str | None = None
    report_dir: str | None = None
    before_partitions_start: dict[str, Any] | None = None
    stale: dict[str, Any] | None = None
    started_at: str = ""
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary (the `--json` output and `report.json`)."""
        return {
            "dry_run": self.dry_run,
            "store": self.store,
            "principal": self.principal,
            "started_at": self.started_at,
            "read": self.read,
            "written": self.written,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "conflicts": self.conflicts,
            "rejected_by_reason": self.rejected_by_reason,
            "files": [vars(item) for item in self.files],
            "days": self.days,
            "report_dir": self.report_dir,
            "rejected_file": str(Path(self.report_dir) / "rejected.jsonl") if self.report_dir else None,
            "conflicts_file": str(Path(self.report_dir) / "conflicts.jsonl") if self.report_dir else None,
            "report_file": str(Path(self.report_dir) / "report.json") if self.report_dir else None,
            "before_partitions_start": self.before_partitions_start,
            "stale": self.stale,
            "warnings": list(self.warnings),
        }


def ingest(
    paths: str | Path | Sequence[str | Path],
    *,
    dry_run: bool = False,
    rejected_dir: str | Path | None = None,
    principal: str | None = None,
    store: OutcomeStore | None = None,
    settings: Settings,
    progress: Progress | None = None,
    mark_stale: bool = True,
    dagster_home: str | Path | None = None,
) -> IngestReport:
    """Validate outcome exports and write their new valid rows to the outcome store by day.

    Args:
        paths: one or more files (.jsonl/.ndjson/.json/.parquet/.pq/.csv), canonical columns or
            the platform's nested camelCase.
        dry_run: read and validate, count new rows and duplicates against the store, write nothing.
        rejected_dir: where `rejected.jsonl`, `conflicts.jsonl` and `report.json` go (default
            `<OPX_HOME>/ingest/<UTC timestamp>/`).
        principal: who ingests (recorded in the report).
        store: the outcome store (default: the settings' backend's).
        settings: the configuration (home, backend, partitions start).
        progress: optional callback `(rows_done, rows_total)` during the write.
        mark_stale: look up the Dagster instance's materialized partitions the new rows touch and
            observe the outcome store, so each changed day gets its new data version (never in a dry run).
        dagster_home: that instance's home (the CLI passes DAGSTER_HOME; default `<home>/dagster_home`).

    Returns:
        IngestReport: the counts (`read == written + duplicates + conflicts + rejected`), rows written per
        day, the rejection reasons, the report directory and the now-stale partitions.

    Raises:
        IngestError: a file is missing, unreadable, of an unknown format, or lacks a required
            field in every row (nothing is written then).
    """
    store = store or outcome_store(settings)
    started = datetime.now(UTC)
    files = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
    if not files:
        raise IngestError("paths: no file given")
    results = [(path, _format(path), _validate_file(path)) for path in files]

    valid, rejected = _combine(results)
    read = sum(result.total for _, _, result in results)
    valid, cross_file = _first_per_id(valid)
    stored = _stored_rows(store, valid)
    new = valid.filter(~pl.col("outcome_id").is_in(stored["outcome_id"].implode()))
    conflicts = _conflicts(valid, stored, files)
    planned = _per_day(new)

    if dry_run:
        days, written = planned, new.height
    else:
        days = _write(store, new.drop(_INDEX_COLUMN), progress)
        written = sum(days.values())
    duplicates = read - rejected.height - conflicts.height - written

    report_dir = None if dry_run else _report_dir(settings, rejected_dir, started)
    notes: list[str] = []
    if cross_file:
        notes.append(f"{cross_file} row(s) repeat an outcome_id of an earlier file in this ingest (counted as duplicates)")
    report = IngestReport(
        files=tuple(
            FileCounts(str(path), kind, result.total, result.valid.height, result.rejected.height)
            for path, kind, result in results
        ),
        read=read,
        written=written,
        duplicates=duplicates,
        rejected=rejected.height,
        conflicts=conflicts.height,
        rejected_by_reason=reasons_by_category(rejected["reason"]),
        days=days,
        store=store.location,
        dry_run=dry_run,
        principal=principal,
        report_dir=str(report_dir) if report_dir else None,
        before_partitions_start=_before_start(new, settings),
        stale=_stale(days, dry_run, mark_stale and written > 0, settings, dagster_home),
        started_at=started.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        warnings=tuple(notes),
    )
    if report_dir is not None:
        rejected.write_ndjson(report_dir / "rejected.jsonl")
        conflicts.write_ndjson(report_dir / "conflicts.jsonl")
        (report_dir / "report.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return report


def reasons_by_category(reasons: pl.Series) -> dict[str, int]:
    """Count rejection reasons by `field: category` (e.g. `ttd_ms: negative`), most frequent first.

    Args:
        reasons: the `reason` column of rejected rows (parts joined by "; ").

    Returns:
        dict[str, int]: a row with several problems counts once per problem.
    """
    counts: dict[str, int] = {}
    for reason in reasons.drop_nulls().to_list():
        for part in reason.split("; "):
            counts[_category(part)] = counts.get(_category(part), 0) + 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _category(part: str) -> str:
    if part.startswith(("line ", "row ")):
        name = "line"
    else:
        match = _FIELD.match(part)
        name = match.group(1) if match else "row"
    for needle, label in _CATEGORIES:
        if needle in part:
            return f"{name}: {label}"
    return name


def _format(path: Path) -> str:
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        allowed = ", ".join(FORMATS)
        raise IngestError(f"{path}: unsupported extension {path.suffix or '(none)'!r}; use one of {allowed}")
    if not path.is_file():
        raise IngestError(f"{path}: no such file")
    return kind


def _validate_file(path: Path) -> ValidationResult:
    """Validate one file, or raise `IngestError` naming it when it cannot be read as its format."""
    try:
        result = validate_outcomes(path)
    except (OSError, ValueError, pl.exceptions.PolarsError, pl.exceptions.PanicException) as error:
        raise IngestError(f"{path}: cannot be read as {FORMATS[path.suffix.lower()]} ({_short(error)})") from None
    _refuse_broken(path, result)
    return result


def _refuse_broken(path: Path, result: ValidationResult) -> None:
    """A file whose every row is unreadable or lacks a required field is the wrong file, not bad rows."""
    if result.total == 0 or result.valid.height:
        return
    reasons = result.rejected["reason"].fill_null("")
    if reasons.str.contains(r"^(line|row) \d+: ").all():
        raise IngestError(f"{path}: no row is a JSON object (is it really {FORMATS[path.suffix.lower()]}?)")
    for column in OUTCOME_COLUMNS:
        if column in NULLABLE:
            continue
        if reasons.str.contains(f"(^|; ){column}: missing", literal=False).all():
            camel = ".".join(CAMEL_CASE_PATHS[column])
            raise IngestError(
                f"{path}: required field {column!r} (camelCase {camel!r}) is missing from every row"
            )


def _short(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__


def _combine(results: Iterable[tuple[Path, str, ValidationResult]]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Valid rows tagged with their file's position, rejected rows with their file's path."""
    valid, rejected = [], []
    for index, (path, _, result) in enumerate(results):
        valid.append(result.valid.with_columns(pl.lit(index, pl.UInt32).alias(_INDEX_COLUMN)))
        rejected.append(result.rejected.select(pl.lit(str(path)).alias(_FILE_COLUMN), pl.all()))
    return pl.concat(valid), pl.concat(rejected)


def _first_per_id(valid: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    unique = valid.unique(subset="outcome_id", keep="first", maintain_order=True)
    return unique, valid.height - unique.height


def _stored_rows(store: OutcomeStore, valid: pl.DataFrame) -> pl.DataFrame:
    """The stored rows (canonical) whose ids the input holds, read through the store's read path."""
    if valid.is_empty():
        return empty_outcomes()
    wanted = valid["outcome_id"]
    if isinstance(store, DynamoOutcomeStore):
        return _dynamo_rows(store, wanted.to_list())
    if isinstance(store, LocalOutcomeStore):
        days = store.days()
        if not days:
            return empty_outcomes()
        start = datetime(days[0].year, days[0].month, days[0].day, tzinfo=UTC)
        end = datetime(days[-1].year, days[-1].month, days[-1].day, tzinfo=UTC) + timedelta(days=1)
        scans = [store.scan(Window(start, end))]
    else:
        days = valid.select(pl.col("recorded_at").dt.date().unique().sort()).to_series().to_list()
        scans = [store.scan(day_window(day)) for day in days]
    rows = pl.concat(scans).filter(pl.col("outcome_id").is_in(wanted.implode())).collect()
    return rows.unique(subset="outcome_id", keep="first", maintain_order=True)


def _conflicts(valid: pl.DataFrame, stored: pl.DataFrame, files: Sequence[Path]) -> pl.DataFrame:
    """Input rows whose id is stored with different content: id, file, and both versions."""
    if stored.is_empty():
        return pl.DataFrame(schema={"outcome_id": pl.String(), "file": pl.String()})
    columns = [c for c in OUTCOME_COLUMNS if c != "outcome_id"]
    paired = valid.join(stored, on="outcome_id", how="inner", suffix=":stored")
    differs = pl.any_horizontal([pl.col(c).ne_missing(pl.col(f"{c}:stored")) for c in columns])
    found = paired.filter(differs)
    names = {index: str(path) for index, path in enumerate(files)}
    return found.select(
        pl.col("outcome_id"),
        pl.col(_INDEX_COLUMN).replace_strict(names, return_dtype=pl.String).alias(_FILE_COLUMN),
        pl.struct([pl.col(f"{c}:stored").alias(c) for c in OUTCOME_COLUMNS if c != "outcome_id"]).alias("stored"),
        pl.struct([pl.col(c) for c in columns]).alias("incoming"),
    )


def _dynamo_resource(store: DynamoOutcomeStore) -> Any:
    import boto3

    return boto3.resource("dynamodb", region_name=store.region, endpoint_url=store.client.meta.endpoint_url)


def _dynamo_rows(store: DynamoOutcomeStore, ids: list[str]) -> pl.DataFrame:
    """The stored items with these ids, as canonical rows (items that do not validate are left out)."""
    resource = _dynamo_resource(store)
    found: list[dict[str, Any]] = []
    for first in range(0, len(ids), _BATCH_GET):
        request: dict[str, Any] = {
            store.table_name: {"Keys": [{"outcomeId": key} for key in ids[first : first + _BATCH_GET]]}
        }
        while request:
            answer = resource.batch_get_item(RequestItems=request)
            found.extend(_plain(item) for item in answer.get("Responses", {}).get(store.table_name, []))
            request = answer.get("UnprocessedKeys") or {}
    return validate_outcomes(found).valid if found else empty_outcomes()


def _per_day(frame: pl.DataFrame) -> dict[str, int]:
    if frame.is_empty():
        return {}
    counts = frame.group_by(pl.col("recorded_at").dt.date().alias("day")).len().sort("day")
    return {day.isoformat(): count for day, count in counts.iter_rows()}


def _write(store: OutcomeStore, new: pl.DataFrame, progress: Progress | None) -> dict[str, int]:
    """Write the new rows day by day; returns the rows actually written per day."""
    if new.is_empty():
        return {}
    parts = new.with_columns(pl.col("recorded_at").dt.date().alias("__day")).partition_by(
        "__day", as_dict=True, include_key=False
    )
    total, done = new.height, 0
    written: dict[str, int] = {}
    table = _dynamo_resource(store).Table(store.table_name) if isinstance(store, DynamoOutcomeStore) else None
    for (day,), part in sorted(parts.items()):
        key = day.isoformat() if isinstance(day, date) else str(day)
        if table is not None:
            added = _put_new(table, part, done, total, progress)
        else:
            # The store merges into the day keeping the first row per outcome_id: never written twice.
            added = store.write(part)
        if added:
            written[key] = added
        done += part.height
        if progress is not None:
            progress(done, total)
    return written


def _put_new(table: Any, part: pl.DataFrame, done: int, total: int, progress: Progress | None) -> int:
    """Conditional puts: an item whose `outcomeId` exists is left alone (a duplicate, not an error)."""
    from botocore.exceptions import ClientError

    added = 0
    for number, item in enumerate(to_items(part), start=1):
        try:
            table.put_item(Item=item, ConditionExpression="attribute_not_exists(outcomeId)")
            added += 1
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
        if progress is not None and number % 500 == 0:
            progress(done + number, total)
    return added


def _report_dir(settings: Settings, rejected_dir: str | Path | None, started: datetime) -> Path:
    if rejected_dir is not None:
        target = Path(rejected_dir).expanduser().absolute()
        target.mkdir(parents=True, exist_ok=True)
        return target
    base = settings.home / "ingest"
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    for attempt in range(1, 1000):
        target = base / (stamp if attempt == 1 else f"{stamp}-{attempt}")
        try:
            target.mkdir(parents=True)
            return target
        except FileExistsError:
            continue
    raise IngestError(f"rejected_dir: cannot create a new report directory under {base}")


def _before_start(new: pl.DataFrame, settings: Settings) -> dict[str, Any] | None:
    """Rows that land before OPX_PARTITIONS_START: stored, but no partition covers them."""
    start = settings.partitions_start
    early = new.filter(pl.col("recorded_at").dt.date() < start)
    if early.is_empty():
        return None
    first = early["recorded_at"].min()
    return {
        "rows": early.height,
        "first_day": first.date().isoformat() if isinstance(first, datetime) else str(first),
        "partitions_start": start.isoformat(),
    }


def _stale(
    days: dict[str, int], dry_run: bool, observe: bool, settings: Settings, home: str | Path | None
) -> dict[str, Any] | None:
    if not days:
        return None
    from opx_learning.ingestion.stale import stale_partitions

    return stale_partitions(
        [date.fromisoformat(day) for day in days],
        settings=settings,
        observe=observe and not dry_run,
        home=home,
    )
