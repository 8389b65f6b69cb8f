"""The integrity sweep: re-read what a window stored and report anything damaged (a P0 alert).

For a window (default: the last 35 days) on the active backend it re-reads:

- **snapshots** whose window starts in it: each version verified like every read
  (parsable, `snapshot_id` and `content_hash` match, the path's type, window and
  version, the exact stored bytes);
- **outcome partitions**, one Parquet file per UTC day of the window: readable, the
  canonical columns and dtypes, every row on its own day, `outcome_id` unique and set;
- **asset partitions** written by the IO manager whose partition key starts in the
  window (and the unpartitioned `latest` files): Parquet readable, JSON parsable,
  snapshot documents consistent with their `content_hash`;
- **audit records** started in the window (and, locally, rows whose `start_time` is
  not an instant at all): known operation, trigger and status, required fields, valid
  instants, terminal records with `end_time` and `duration_ms`, RUNNING ones without.
  Locally the state database is opened read-only and `PRAGMA quick_check` is run.

The outcome store on DynamoDB is not swept: its records are validated by every read
(invalid ones are rejected and counted, see `daily_outcomes`). On DynamoDB the audit
sweep queries the `OperationTypeIndex` per known operation type, so an item with an
unknown `operationType` or without `startTime` is outside its reach.

Nothing is changed, moved or deleted: the damaged files and rows stay as evidence.
`run_sweep` raises one P0 `DATA_CORRUPTION` alert listing every finding.
"""

from __future__ import annotations

import io
import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from opx_learning.backends import backend_for
from opx_learning.config import Settings
from opx_learning.core.schema import OUTCOME_COLUMNS, OUTCOME_SCHEMA
from opx_learning.core.snapshots import Snapshot
from opx_learning.core.windows import Window, iso, to_utc
from opx_learning.integrity.findings import (
    Finding,
    digest,
    publish_corruption,
    publish_tampering,
)
from opx_learning.integrity.manifest import (
    Entry,
    Ledger,
    ManifestUnavailable,
    stored_keys,
)
from opx_learning.safety.models import (
    AuditStatus,
    AuthorityType,
    OperationType,
    TriggerType,
)
from opx_learning.stores.blobs import get_bytes, list_keys
from opx_learning.stores.outcomes import (
    DynamoOutcomeStore,
    LocalOutcomeStore,
    S3OutcomeStore,
    outcome_store,
)
from opx_learning.stores.snapshots import snapshot_store

DEFAULT_DAYS = 35
STORES = ("snapshots", "outcomes", "assets", "audit", "manifest")

Progress = Callable[[str, int, int], None]
_TERMINAL = {status.value for status in AuditStatus if status.terminal}
# Rows whose start_time is not an ISO instant are swept whatever the window: a window query would miss them.
_NOT_AN_INSTANT = "start_time NOT GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T*'"
_AUDIT_COLUMNS = (
    "audit_id", "operation_type", "trigger_type", "status", "start_time", "end_time", "duration_ms",
    "parameters", "results", "error_message", "principal", "authority", "run_id", "version",
)


def default_window(days: int = DEFAULT_DAYS, end: datetime | None = None) -> Window:
    """The `days` days up to `end` (default: now, to the millisecond)."""
    stop = end or datetime.now(UTC)
    stop = stop.replace(microsecond=stop.microsecond // 1000 * 1000)
    return Window(stop - timedelta(days=days), stop)


@dataclass
class SweepReport:
    """What a sweep read and what it found."""

    window: Window
    backend: str
    locations: dict[str, str] = field(default_factory=dict)
    checked: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STORES, 0))
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    alert_dedup_id: str | None = None
    alert_delivered: bool | None = None
    alerts: list[dict[str, Any]] = field(default_factory=list)
    read: dict[str, set[str]] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        """Whether nothing was found."""
        return not self.findings

    def summary(self) -> str:
        """One line: what was checked where, and how many findings."""
        counts = ", ".join(f"{self.checked[name]} {label}" for name, label in _LABELS.items())
        alarms = ", ".join(sorted({finding.alarm for finding in self.findings}))
        verdict = "clean" if self.clean else f"{len(self.findings)} finding(s): {alarms}"
        return f"{self.window.start_iso}..{self.window.end_iso} on {self.backend}: {counts} checked; {verdict}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe report (the `--json` output of `opx-learning verify`)."""
        return {
            "clean": self.clean,
            "window": {"start": self.window.start_iso, "end": self.window.end_iso},
            "backend": self.backend,
            "stores": self.locations,
            "checked": dict(self.checked),
            "findings": [finding.to_dict() for finding in self.findings],
            "notes": list(self.notes),
            "alert": None if self.clean else {
                "alarm": "/".join(sorted({finding.alarm for finding in self.findings})),
                "severity": "P0",
                "dedup_id": self.alert_dedup_id,
                "delivered": self.alert_delivered,
                "count": len(self.alerts),
            },
            "alerts": list(self.alerts),
        }


_LABELS = {
    "manifest": "manifest listings",
    "snapshots": "snapshot versions",
    "outcomes": "outcome partitions",
    "assets": "asset partitions",
    "audit": "audit records",
}


def sweep(window: Window, settings: Settings, *, progress: Progress | None = None) -> SweepReport:
    """Re-read the snapshots, outcome and asset partitions and audit records of `window`; raise no alert.

    Args:
        window: the half-open window to sweep.
        settings: the backend to read.
        progress: optional callback `(store, done, total)`.

    Returns:
        The report; `report.findings` lists every damaged item (the evidence is left untouched).

    Raises:
        OSError, botocore errors, sqlite3 errors other than corruption: a store could not be read
            at all, so the sweep has no verdict.
    """
    report = SweepReport(window, settings.store_description)
    report_progress: Progress = progress or (lambda store, done, total: None)
    for name, check in (
        ("snapshots", _snapshots),
        ("outcomes", _outcomes),
        ("assets", _assets),
        ("audit", _audit),
        ("manifest", _manifest),
    ):
        check(window, settings, report, _Counter(name, report, report_progress))
    return report


def run_sweep(
    window: Window,
    settings: Settings,
    *,
    source: str = "verify",
    progress: Progress | None = None,
    publisher: Any = None,
) -> SweepReport:
    """`sweep`, then one P0 `DATA_CORRUPTION` alert per finding (if any).

    Args:
        window: the half-open window to sweep.
        settings: the backend to read.
        source: what ran the sweep, named in the alert (`verify`, `daily sweep`).
        progress: optional callback `(store, done, total)`.
        publisher: an `AlertPublisher` (default: the active backend's).

    Returns:
        The report, with each alert's deduplication id and delivery outcome (the first one's
        in `alert_dedup_id`; `alert_delivered` is True only when every alert was delivered).
    """
    report = sweep(window, settings, progress=progress)
    tampering = publish_tampering(report.findings, source=source, settings=settings,
                                  heads=report.locations.get("chain heads"), publisher=publisher)
    tampered = [finding for finding in report.findings if finding.alarm == "AUDIT_TAMPERED"]
    for finding, (alert, delivered) in zip(tampered, tampering, strict=False):
        report.alerts.append({"dedup_id": alert.dedup_id, "delivered": delivered, "where": finding.location,
                              "alarm": alert.alarm})
    for finding in report.findings:
        if finding.alarm == "AUDIT_TAMPERED":
            continue
        alert, delivered = publish_corruption(
            [finding],
            source=source,
            settings=settings,
            window={"start": window.start_iso, "end": window.end_iso},
            publisher=publisher,
        )
        report.alerts.append({"dedup_id": alert.dedup_id, "delivered": delivered, "where": finding.location,
                              "alarm": alert.alarm})
    if report.alerts:
        report.alert_dedup_id = report.alerts[0]["dedup_id"]
        report.alert_delivered = all(alert["delivered"] for alert in report.alerts)
    return report


class _Counter:
    """Counts the items of one store and reports progress about every 5 %."""

    def __init__(self, store: str, report: SweepReport, progress: Progress) -> None:
        self.store, self.report, self.progress = store, report, progress
        self.total = 0

    def start(self, total: int) -> None:
        self.total = total
        self.progress(self.store, 0, total)

    def tick(self) -> None:
        self.report.checked[self.store] += 1
        done = self.report.checked[self.store]
        if done == self.total or done % max(1, self.total // 20) == 0:
            self.progress(self.store, done, self.total)


def _starts_in(window: Window, key: str) -> bool:
    """Whether a partition key (`YYYY-MM-DD`, or a custom `START..END`) starts inside the window."""
    try:
        start = datetime.combine(date.fromisoformat(key[:10]), datetime.min.time(), tzinfo=UTC)
    except ValueError:
        return False
    return window.start.date() <= start.date() and start < window.end


def _snapshots(window: Window, settings: Settings, report: SweepReport, counter: _Counter) -> None:
    store = snapshot_store(settings)
    report.locations["snapshots"] = store.location
    entries = [
        (kind, span, version)
        for kind, span, version in store.entries()
        if window.start <= span.start < window.end
    ]
    counter.start(len(entries))
    report.read["snapshots"] = {store.where(*entry) for entry in entries}
    for kind, span, version in entries:
        finding = store.check(kind, span, version)
        if finding is not None:
            report.findings.append(finding)
        counter.tick()


def _outcomes(window: Window, settings: Settings, report: SweepReport, counter: _Counter) -> None:
    store = outcome_store(settings)
    report.locations["outcomes"] = store.location
    if isinstance(store, DynamoOutcomeStore):
        report.notes.append(
            f"outcomes: {store.location} is a DynamoDB table, not partition files; every read validates its records"
        )
        counter.start(0)
        return
    days: list[tuple[date, str, Callable[[], bytes | None]]] = []
    if isinstance(store, LocalOutcomeStore):
        days = [(day, str(store.day_file(day)), _file_reader(store.day_file(day))) for day in window.days()]
    elif isinstance(store, S3OutcomeStore):
        present = set(store.days())
        days = [
            (day, store.day_uri(day), _uri_reader(store.day_uri(day), store.client))
            for day in window.days()
            if day in present
        ]
    readable = [(day, where, data) for day, where, read in days if (data := read()) is not None]
    ledger = _Checked(store.ledger, report)
    if ledger.blind:
        counter.start(0)
        return
    counter.start(len(readable))
    for day, where, data in readable:
        problem = ledger.problem(where, data) or _outcome_problem(day, data)
        if problem:
            report.findings.append(Finding("outcomes", where, problem, digest(data)))
        counter.tick()


def _file_reader(path: Path) -> Callable[[], bytes | None]:
    def read() -> bytes | None:
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None

    return read


def _uri_reader(uri: str, client: Any) -> Callable[[], bytes | None]:
    return lambda: get_bytes(uri, client=client)


def _read_parquet(data: bytes) -> tuple[pl.DataFrame | None, str | None]:
    try:
        return pl.read_parquet(io.BytesIO(data)), None
    except Exception as exc:  # noqa: BLE001 - any failure to decode the file is the finding itself
        return None, f"unreadable Parquet ({len(data)} bytes): {type(exc).__name__}: {str(exc).splitlines()[0][:300]}"


def _outcome_problem(day: date, data: bytes) -> str | None:
    frame, problem = _read_parquet(data)
    if frame is None:
        return problem
    missing = [column for column in OUTCOME_COLUMNS if column not in frame.columns]
    if missing:
        return f"schema: missing column(s) {', '.join(missing)}"
    wrong = [
        f"{column} is {frame.schema[column]} (expected {OUTCOME_SCHEMA[column]})"
        for column in OUTCOME_COLUMNS
        if frame.schema[column] != OUTCOME_SCHEMA[column]
    ]
    if wrong:
        return "schema: " + "; ".join(wrong)
    if frame.is_empty():
        return None
    if frame["outcome_id"].null_count():
        return f"{frame['outcome_id'].null_count()} row(s) without outcome_id"
    duplicates = frame.height - frame["outcome_id"].n_unique()
    if duplicates:
        return f"{duplicates} duplicate outcome_id row(s)"
    days = frame["recorded_at"].dt.date()
    elsewhere = int((days != day).sum()) + days.null_count()
    if elsewhere:
        return f"{elsewhere} row(s) recorded on another day than the partition {day.isoformat()}"
    return None


def _asset_files(base: str, settings: Settings) -> Iterator[tuple[str, Callable[[], bytes | None]]]:
    """`(uri, reader)` of every `.parquet` / `.json` partition file under the asset storage base."""
    if base.startswith("s3://"):
        bucket = base[len("s3://"):].split("/", 1)[0]
        client = backend_for(settings).blob_client()
        for key in list_keys(base + "/", client=client):
            if key.endswith((".parquet", ".json")) and "/snapshots/" not in f"/{key}":
                uri = f"s3://{bucket}/{key}"
                yield uri, _uri_reader(uri, client)
        return
    root = Path(base)
    if not root.is_dir():
        return
    for path in sorted(root.rglob("*")):
        if path.suffix in (".parquet", ".json") and not path.name.startswith(".") and path.is_file():
            yield str(path), _file_reader(path)


def _assets(window: Window, settings: Settings, report: SweepReport, counter: _Counter) -> None:
    base = settings.assets_base
    report.locations["assets"] = base
    files = [
        (uri, read)
        for uri, read in _asset_files(base, settings)
        if (key := uri.rsplit("/", 1)[-1].rsplit(".", 1)[0]) == "latest" or _starts_in(window, key)
    ]
    ledger = _Checked(backend_for(settings).asset_storage().ledger(), report)
    if ledger.blind:
        counter.start(0)
        return
    counter.start(len(files))
    for uri, read in files:
        try:
            data = read()
        except PermissionError as exc:
            report.findings.append(Finding("assets", uri, f"unreadable: {exc}"))
            counter.tick()
            continue
        if data is not None:
            problem = ledger.problem(uri, data) or _asset_problem(uri, data)
            if problem:
                report.findings.append(Finding("assets", uri, problem, digest(data)))
        counter.tick()


class _Checked:
    """A store's manifest, read once per sweep: the manifest verdict on each object read (before decoding it)."""

    def __init__(self, ledger: Ledger, report: SweepReport) -> None:
        self.ledger, self.report = ledger, report
        self.entries: dict[str, Entry] = {}
        self.available = ledger.active
        if ledger.active:
            try:
                self.entries = ledger.manifest.entries(ledger.store)  # type: ignore[union-attr]
            except ManifestUnavailable as exc:
                self.available = False
                report.findings.append(Finding(ledger.store, ledger.manifest.location, f"manifest unreadable: {exc}"))  # type: ignore[union-attr]

    @property
    def blind(self) -> bool:
        """Whether the store has a manifest that could not be read: then nothing of it is decoded."""
        return self.ledger.active and not self.available

    def problem(self, uri: str, data: bytes) -> str | None:
        """The manifest's objection to `data` stored at `uri` (None: it matches, or no manifest)."""
        if not self.available:
            return None
        self.report.read.setdefault(self.ledger.store, set()).add(uri)
        key = self.ledger.key(uri)
        return self.ledger.problem(key, data, self.entries.get(key))


def _manifest(window: Window, settings: Settings, report: SweepReport, counter: _Counter) -> None:
    """Both ways, over every store: objects the manifest lists that are gone, objects it does not know."""
    backend = backend_for(settings)
    active = [ledger for ledger in backend.ledgers() if ledger.active]
    counter.start(len(active))
    for ledger in active:
        counter.tick()
        checked = _Checked(ledger, report)
        if not checked.available:
            continue
        present = set(stored_keys(ledger, backend.blob_client() if ledger.base.startswith("s3://") else None))
        for key in sorted(set(checked.entries) - present):
            problem = ledger.problem(key, None, checked.entries[key])
            report.findings.append(Finding(ledger.store, ledger.uri(key), str(problem)))
        already = report.read.get(ledger.store, set())
        for key in sorted(present - set(checked.entries)):
            if ledger.uri(key) not in already:
                report.findings.append(Finding(ledger.store, ledger.uri(key), str(ledger.problem(key, b"", None))))


def _asset_problem(uri: str, data: bytes) -> str | None:
    if uri.endswith(".parquet"):
        return _read_parquet(data)[1]
    try:
        document = json.loads(data)
    except ValueError as exc:
        return f"unparsable JSON ({len(data)} bytes): {exc}"
    if isinstance(document, dict) and {"snapshot_id", "content_hash"} <= set(document):
        try:
            Snapshot.from_dict(document)
        except (ValueError, TypeError, AttributeError) as exc:
            return f"snapshot document inconsistent: {exc}"
    return None


def _audit(window: Window, settings: Settings, report: SweepReport, counter: _Counter) -> None:
    backend_for(settings).sweep_audit(window, report, counter)


def sweep_sqlite_audit(window: Window, settings: Settings, report: SweepReport, counter: _Counter) -> None:
    """The audit sweep of the local backend: the state database, opened read-only."""
    path = settings.state_db
    report.locations["audit"] = str(path)
    if not path.exists():
        report.notes.append(f"audit: {path} does not exist (no operation has been recorded in this home)")
        counter.start(0)
        return
    try:
        # Read-only: the sweep must never create, migrate or repair the evidence.
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    except sqlite3.Error as exc:
        report.findings.append(Finding("audit", str(path), f"state database cannot be opened: {exc}"))
        counter.start(0)
        return
    try:
        rows = _sqlite_rows(conn, window, path, report)
    finally:
        conn.close()
    counter.start(len(rows))
    for rowid, row in rows:
        _check_audit_row(row, f"{path}#audit/{row.get('audit_id') or f'rowid {rowid}'}", report)
        counter.tick()


def _sqlite_rows(
    conn: sqlite3.Connection, window: Window, path: Path, report: SweepReport
) -> list[tuple[int, dict[str, Any]]]:
    try:
        check = [row[0] for row in conn.execute("PRAGMA quick_check").fetchall()]
        if check != ["ok"]:
            report.findings.append(Finding("audit", str(path), "PRAGMA quick_check: " + "; ".join(map(str, check[:5]))))
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit'").fetchone():
            report.findings.append(Finding("audit", str(path), "no audit table (empty, truncated or replaced file)"))
            return []
        cursor = conn.execute(
            f"SELECT rowid, {', '.join(_AUDIT_COLUMNS)} FROM audit "
            f"WHERE (start_time >= ? AND start_time < ?) OR {_NOT_AN_INSTANT} ORDER BY rowid",
            (iso(window.start), iso(window.end)),
        )
        return [(row[0], dict(zip(_AUDIT_COLUMNS, row[1:], strict=True))) for row in cursor.fetchall()]
    except sqlite3.DatabaseError as exc:
        if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
            raise
        report.findings.append(Finding("audit", str(path), f"state database unreadable: {exc}", _file_digest(path)))
        return []


def _file_digest(path: Path) -> str:
    try:
        return digest(path.read_bytes())
    except OSError:
        return ""


def sweep_dynamo_audit(window: Window, settings: Settings, report: SweepReport, counter: _Counter) -> None:
    """The audit sweep of the aws backend: the audit table, queried per operation type."""
    from boto3.dynamodb.types import TypeDeserializer

    from opx_learning.safety.dynamo_backend import OPERATION_TYPE_INDEX, dynamo_client

    client = dynamo_client(settings.region)
    table = settings.audit_table
    report.locations["audit"] = f"dynamodb://{table} ({settings.region})"
    deserializer = TypeDeserializer()
    items: list[dict[str, Any]] = []
    for operation in OperationType:
        pages = client.get_paginator("query").paginate(
            TableName=table,
            IndexName=OPERATION_TYPE_INDEX,
            KeyConditionExpression="operationType = :op AND startTime BETWEEN :lo AND :hi",
            ExpressionAttributeValues={
                ":op": {"S": operation.value},
                ":lo": {"S": iso(window.start)},
                ":hi": {"S": iso(window.end - timedelta(milliseconds=1))},
            },
        )
        items.extend(
            {key: deserializer.deserialize(value) for key, value in item.items()}
            for page in pages
            for item in page.get("Items", [])
        )
    counter.start(len(items))
    for item in items:
        row = _dynamo_row(item)
        _check_audit_row(row, f"dynamodb://{table}/{item.get('PK', '?')}", report, raw=item)
        counter.tick()


def _dynamo_row(item: dict[str, Any]) -> dict[str, Any]:
    """A DynamoDB audit item in the local row's field names (nested values kept as they are)."""
    by = item.get("triggeredBy")
    by = by if isinstance(by, dict) else {}
    return {
        "audit_id": item.get("auditId"),
        "operation_type": item.get("operationType"),
        "trigger_type": item.get("triggerType"),
        "status": item.get("status"),
        "start_time": item.get("startTime"),
        "end_time": item.get("endTime"),
        "duration_ms": item.get("durationMs"),
        "parameters": item.get("parameters", {}),
        "results": item.get("results", {}),
        "error_message": item.get("errorMessage"),
        "principal": by.get("principal"),
        "authority": by.get("type"),
        "run_id": item.get("runId"),
        "version": item.get("version"),
        "pk": item.get("PK"),
    }


def _check_audit_row(row: dict[str, Any], where: str, report: SweepReport, raw: Any = None) -> None:
    problems = audit_row_problems(row)
    if problems:
        evidence = digest(json.dumps(raw if raw is not None else row, sort_keys=True, default=str))
        report.findings.append(Finding("audit", where, "; ".join(problems), evidence))


def audit_row_problems(row: dict[str, Any]) -> list[str]:
    """What is wrong with one stored audit record (empty when it is well-formed).

    Args:
        row: the record's stored fields under the SQLite column names (`parameters` and
            `results` as JSON text or dicts; on DynamoDB also `pk`).

    Returns:
        One phrase per problem: unknown enum values, missing fields, unreadable instants,
        a terminal record without `end_time` / `duration_ms`, a RUNNING one with them.
    """
    problems: list[str] = []
    operation = row.get("operation_type")
    audit_id = row.get("audit_id")
    _enum(problems, "operation_type", operation, OperationType)
    _enum(problems, "trigger_type", row.get("trigger_type"), TriggerType)
    _enum(problems, "status", row.get("status"), AuditStatus)
    _enum(problems, "triggered_by.type", row.get("authority"), AuthorityType)
    if not isinstance(audit_id, str) or not audit_id:
        problems.append("audit_id missing")
    elif isinstance(operation, str) and not audit_id.startswith(f"{operation}#"):
        problems.append(f"audit_id {audit_id[:80]!r} does not start with its operation_type {operation}#")
    if "pk" in row and row["pk"] != f"AUDIT#{audit_id}":
        problems.append(f"PK {str(row['pk'])[:80]!r} does not name audit_id {str(audit_id)[:80]!r}")
    if not isinstance(row.get("principal"), str) or not row.get("principal"):
        problems.append("triggered_by.principal missing")
    start = _instant(problems, "start_time", row.get("start_time"), required=True)
    status = row.get("status")
    end = _instant(problems, "end_time", row.get("end_time"), required=status in _TERMINAL)
    duration = row.get("duration_ms")
    if status in _TERMINAL:
        if not _is_int(duration) or int(duration) < 0:
            problems.append(f"terminal record with duration_ms {duration!r} (a non-negative integer is required)")
        elif start is not None and end is not None:
            expected = (end - start).total_seconds() * 1000
            if end < start:
                problems.append(f"end_time {iso(end)} is before start_time {iso(start)}")
            elif abs(int(duration) - expected) > 1:
                problems.append(f"duration_ms {int(duration)} does not match end_time - start_time ({expected:.0f})")
    elif status == AuditStatus.RUNNING.value and (row.get("end_time") or duration is not None):
        problems.append("RUNNING record with an end_time or duration_ms")
    for name in ("parameters", "results"):
        value = row.get(name)
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                problems.append(f"{name} is not JSON")
                continue
        if not isinstance(value, dict):
            problems.append(f"{name} is not a JSON object")
    version = row.get("version")
    if not _is_int(version) or int(version) < 1:
        problems.append(f"version {version!r} is not a positive integer")
    if row.get("error_message") is not None and not isinstance(row.get("error_message"), str):
        problems.append("error_message is not text")
    return problems


def _enum(problems: list[str], name: str, value: Any, kind: Iterable[Any]) -> None:
    allowed = [member.value for member in kind]
    if value not in allowed:
        problems.append(f"{name} {str(value)[:80]!r} is not one of {', '.join(allowed)}")


def _instant(problems: list[str], name: str, value: Any, *, required: bool) -> datetime | None:
    if value is None or value == "":
        if required:
            problems.append(f"{name} missing")
        return None
    if not isinstance(value, str):
        problems.append(f"{name} {value!r} is not an ISO-8601 instant")
        return None
    try:
        return to_utc(value, name)
    except ValueError:
        problems.append(f"{name} {value[:80]!r} is not an ISO-8601 instant")
        return None


def _is_int(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    # DynamoDB numbers arrive as Decimal.
    try:
        return value is not None and int(value) == value
    except (TypeError, ValueError):
        return False
