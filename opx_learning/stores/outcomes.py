"""Outcome stores: day-partitioned Parquet (local or S3) and the platform's DynamoDB table (aws)."""

from __future__ import annotations

import io
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl

from opx_learning.config import Settings
from opx_learning.core.schema import OUTCOME_COLUMNS, OUTCOME_SCHEMA, empty_outcomes
from opx_learning.core.validation import OutcomeSource, validate_outcomes
from opx_learning.core.windows import Instant, Window
from opx_learning.integrity.manifest import (
    REMOVED,
    Entry,
    Ledger,
    file_digest,
    sha256_of,
)
from opx_learning.stores.blobs import (
    list_keys,
    s3_client,
    split_s3,
)

try:
    import fcntl
except ImportError:  # not POSIX: writers are then not serialised across processes
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
TIME_INDEX = "TimeIndex"
_PART = "part-0.parquet"
_DAY_PREFIX = "recorded_date="


def _canonical(frame: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """An already valid frame in canonical column order and dtypes."""
    if isinstance(frame, pl.LazyFrame):
        frame = frame.collect()
    return frame.select([pl.col(c).cast(OUTCOME_SCHEMA[c]) for c in OUTCOME_COLUMNS])


def _merge(existing: pl.DataFrame, part: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """A day's rows plus new ones, first row per `outcome_id` kept, sorted by time; and the count added."""
    merged = pl.concat([existing, part]).unique(subset="outcome_id", keep="first", maintain_order=True)
    return merged.sort("recorded_at", maintain_order=True), merged.height - existing.height


def _by_day(frame: pl.DataFrame | pl.LazyFrame) -> list[tuple[date, pl.DataFrame]]:
    """Canonical rows split by UTC day of `recorded_at`, days ascending."""
    data = _canonical(frame)
    if data.is_empty():
        return []
    parts = data.with_columns(pl.col("recorded_at").dt.date().alias("__day")).partition_by(
        "__day", as_dict=True, include_key=False
    )
    return [(day, part) for (day,), part in sorted(parts.items())]


@dataclass(frozen=True)
class DayVersion:
    """The version of one stored outcome day: its file's SHA-256 and when that content was written (None: unknown)."""

    sha256: str
    written_at: str | None = None


def _ledger_versions(ledger: Ledger) -> dict[str, DayVersion]:
    """Day versions from the manifest's latest row of each day file (a recorded removal is no version)."""
    found = {}
    for key, entry in ledger.expected(_DAY_PREFIX).items():
        folder, _, name = key.partition("/")
        if name != _PART or entry.size == REMOVED:
            continue
        found[folder.removeprefix(_DAY_PREFIX)] = DayVersion(entry.sha256, entry.written_at)
    return found


def _in_window(window: Window) -> pl.Expr:
    return (pl.col("recorded_at") >= window.start) & (pl.col("recorded_at") < window.end)


class OutcomeStore(ABC):
    """Where outcomes live; reads are by half-open UTC window on `recorded_at`."""

    @abstractmethod
    def write(self, frame: pl.DataFrame | pl.LazyFrame, progress: Progress | None = None) -> int:
        """Store already valid outcomes, idempotently by `outcome_id`.

        Args:
            frame: rows with the canonical schema (validate them first with `validate_outcomes`).
            progress: optional callback `(days_done, days_total)` for long writes.

        Returns:
            int: the number of rows written.
        """

    @abstractmethod
    def scan(self, window: Window) -> pl.LazyFrame:
        """A lazy frame over the window's outcomes, reading only the days the window touches."""

    def read(self, window: Window) -> pl.DataFrame:
        """The window's outcomes as a DataFrame (canonical schema)."""
        return self.scan(window).collect()

    @abstractmethod
    def days(self) -> list[date]:
        """The UTC days that hold outcomes, ascending."""

    def day_versions(self) -> dict[str, DayVersion]:
        """The content version of every stored day (ISO day -> its file's SHA-256); empty when days have no file."""
        return {}

    @property
    @abstractmethod
    def location(self) -> str:
        """Human-readable location (directory or table)."""


class LocalOutcomeStore(OutcomeStore):
    """Day-partitioned Parquet: `root/recorded_date=YYYY-MM-DD/part-0.parquet`, one file per UTC day.

    Writes merge into the day's file keeping the first row per `outcome_id` and replace it
    atomically (temporary file + rename), so readers never see a partial file.
    """

    def __init__(self, root: Path | str, *, ledger: Ledger | None = None) -> None:
        self.root = Path(root)
        self.ledger = ledger or Ledger(None, "outcomes", self.root)

    @property
    def location(self) -> str:
        """The store directory."""
        return str(self.root)

    def day_file(self, day: date) -> Path:
        """The Parquet file that holds `day`'s outcomes."""
        return self.root / f"{_DAY_PREFIX}{day.isoformat()}" / _PART

    def write(self, frame: pl.DataFrame | pl.LazyFrame, progress: Progress | None = None) -> int:
        """Merge rows into their day files (first row per `outcome_id` wins); returns new rows written."""
        parts = _by_day(frame)
        if not parts:
            return 0
        written = 0
        self.root.mkdir(parents=True, exist_ok=True)
        with self._lock():
            listed = self.ledger.expected(_DAY_PREFIX)
            for done, (day, part) in enumerate(parts, start=1):
                written += self._merge_day(day, part, listed)
                if progress is not None:
                    progress(done, len(parts))
        return written

    def _merge_day(self, day: date, part: pl.DataFrame, listed: Mapping[str, Entry]) -> int:
        target = self.day_file(day)
        target.parent.mkdir(parents=True, exist_ok=True)
        entry = listed.get(self.ledger.key(target)) if self.ledger.active else None
        if target.exists():
            self.ledger.check_file(target, entry)
            existing = pl.read_parquet(target)
        else:
            self.ledger.check(target, None, entry)
            existing = empty_outcomes()
        merged, added = _merge(existing, part)
        if added == 0:
            return 0
        buffer = io.BytesIO()
        merged.write_parquet(buffer, compression="zstd", compression_level=1, statistics=True)
        self.ledger.write(target, buffer.getvalue())
        return added

    @contextmanager
    def _lock(self) -> Iterator[None]:
        if fcntl is None:
            yield
            return
        with (self.root / ".lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def files(self, window: Window) -> list[Path]:
        """The existing day files a read of `window` opens (and no others), each checked against the manifest.

        Raises:
            IntegrityError: a file differs from the manifest, is unknown to it, or is listed but missing.
        """
        paths = [self.day_file(day) for day in window.days()]
        if not self.ledger.active:
            return [path for path in paths if path.exists()]
        listed = self.ledger.expected(_DAY_PREFIX)
        found = []
        for path in paths:
            entry = listed.get(self.ledger.key(path))
            if path.exists():
                self.ledger.check_file(path, entry)
                found.append(path)
            elif entry is not None:
                self.ledger.check(path, None, entry)
        return found

    def scan(self, window: Window) -> pl.LazyFrame:
        """Lazily read only the window's day files, filtered half-open on `recorded_at`."""
        files = self.files(window)
        if not files:
            return empty_outcomes().lazy()
        return (
            pl.scan_parquet(files, hive_partitioning=False)
            .select([pl.col(c).cast(OUTCOME_SCHEMA[c]) for c in OUTCOME_COLUMNS])
            .filter(_in_window(window))
        )

    def days(self) -> list[date]:
        """The days that have a Parquet file, ascending."""
        if not self.root.is_dir():
            return []
        found = []
        for folder in self.root.glob(f"{_DAY_PREFIX}*"):
            try:
                day = date.fromisoformat(folder.name.removeprefix(_DAY_PREFIX))
            except ValueError:
                continue
            if (folder / _PART).exists():
                found.append(day)
        return sorted(found)

    def day_versions(self) -> dict[str, DayVersion]:
        """Each stored day's SHA-256: the manifest's when it is kept, else the file's own digest."""
        if self.ledger.active:
            return _ledger_versions(self.ledger)
        return {day.isoformat(): DayVersion(file_digest(self.day_file(day))[0]) for day in self.days()}


class S3OutcomeStore(OutcomeStore):
    """The same day-partitioned Parquet layout on S3: `<uri>/recorded_date=YYYY-MM-DD/part-0.parquet`.

    A read fetches only the window's day objects. Writes merge into each day's object
    (first row per `outcome_id` wins); S3 has no cross-process lock, so run one writer at a time.

    Args:
        uri: `s3://bucket/prefix` (on the aws backend, `OPX_OUTCOMES_S3_URI`); the bucket must exist.
        region: the bucket's AWS region (`settings.region`; None: boto3's own configuration).
        client: a boto3 S3 client (default: one for `region`, made on first use).

    Raises:
        ValueError: `uri` is not an s3:// URI.
    """

    def __init__(self, uri: str, *, region: str | None = None, client: Any = None, ledger: Ledger | None = None) -> None:
        split_s3(uri)
        self.uri = uri.rstrip("/")
        self.region = region
        self._client = client
        self.ledger = ledger or Ledger(None, "outcomes", self.uri)

    @property
    def client(self) -> Any:
        """The S3 client of this store."""
        if self._client is None:
            self._client = s3_client(self.region)
        return self._client

    @property
    def location(self) -> str:
        """The S3 URI of the store."""
        return self.uri

    def day_uri(self, day: date) -> str:
        """The object that holds `day`'s outcomes."""
        return f"{self.uri}/{_DAY_PREFIX}{day.isoformat()}/{_PART}"

    def _day(self, day: date) -> pl.DataFrame | None:
        data = self.ledger.read(self.day_uri(day), client=self.client)
        return None if data is None else pl.read_parquet(io.BytesIO(data))

    def write(self, frame: pl.DataFrame | pl.LazyFrame, progress: Progress | None = None) -> int:
        """Merge rows into their day objects (first row per `outcome_id` wins); returns new rows written."""
        parts = _by_day(frame)
        written = 0
        for done, (day, part) in enumerate(parts, start=1):
            existing = self._day(day)
            merged, added = _merge(empty_outcomes() if existing is None else existing, part)
            if added:
                buffer = io.BytesIO()
                merged.write_parquet(buffer, compression="zstd", compression_level=1, statistics=True)
                self.ledger.write(self.day_uri(day), buffer.getvalue(), client=self.client)
                written += added
            if progress is not None:
                progress(done, len(parts))
        return written

    def scan(self, window: Window) -> pl.LazyFrame:
        """The window's day objects (and no others), filtered half-open on `recorded_at`."""
        frames = [frame for frame in (self._day(day) for day in window.days()) if frame is not None]
        if not frames:
            return empty_outcomes().lazy()
        return _canonical(pl.concat(frames)).lazy().filter(_in_window(window))

    def days(self) -> list[date]:
        """The days that have an object, ascending."""
        found = set()
        for key in list_keys(f"{self.uri}/{_DAY_PREFIX}", client=self.client):
            folder = key.rsplit("/", 2)[-2] if key.endswith(f"/{_PART}") else ""
            try:
                found.add(date.fromisoformat(folder.removeprefix(_DAY_PREFIX)))
            except ValueError:
                continue
        return sorted(found)

    def day_versions(self) -> dict[str, DayVersion]:
        """Each stored day's SHA-256: the manifest's when it is kept, else the object's own digest."""
        if self.ledger.active:
            return _ledger_versions(self.ledger)
        versions = {}
        for day in self.days():
            data = self.ledger.read(self.day_uri(day), client=self.client)
            if data is not None:
                versions[day.isoformat()] = DayVersion(sha256_of(data))
        return versions


def _iso_us(column: str) -> pl.Expr:
    return pl.col(column).dt.to_string("%Y-%m-%dT%H:%M:%S%.6fZ")


def _key_floor(instant: datetime) -> str:
    """The instant's whole second as `YYYY-MM-DDTHH:MM:SS`, a sort-key bound for stored `recordedAt` strings.

    A stored ISO-8601 UTC value starts with its own whole second in this fixed-width form and
    then has any suffix (no fraction, 3 or 6 digits, `Z` or `+00:00`), so it sorts at or after
    the floor of every instant at or before it, whatever its fractional digits.
    """
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _key_ceiling(instant: datetime) -> str:
    """The smallest whole second at or after `instant`: every stored value of an earlier instant sorts before it."""
    whole = instant.replace(microsecond=0)
    return _key_floor(whole if whole == instant else whole + timedelta(seconds=1))


def _number(value: float | None) -> Decimal | None:
    return None if value is None else Decimal(repr(value))


def to_items(frame: pl.DataFrame) -> list[dict[str, Any]]:
    """Canonical rows as the platform's nested camelCase DynamoDB items (plus `recordedDate`)."""
    rows = frame.with_columns(
        _iso_us("recorded_at").alias("recorded_at"),
        _iso_us("validated_at").alias("validated_at"),
        pl.col("recorded_at").dt.strftime("%Y-%m-%d").alias("recorded_date"),
        pl.col("resolution_type").cast(pl.String),
    ).to_dicts()
    items = []
    for row in rows:
        item: dict[str, Any] = {
            "outcomeId": row["outcome_id"],
            "incidentId": row["incident_id"],
            "service": row["service"],
            "recordedAt": row["recorded_at"],
            "recordedDate": row["recorded_date"],
            "validatedAt": row["validated_at"],
            "classification": {
                "truePositive": row["true_positive"],
                "falsePositive": row["false_positive"],
                "rootCause": row["root_cause"],
                "resolutionType": row["resolution_type"],
            },
            "timing": {"ttd": _number(row["ttd_ms"]), "ttr": _number(row["ttr_ms"])},
        }
        if row["predicted_confidence"] is not None:
            item["predictedConfidence"] = _number(row["predicted_confidence"])
        if row["human_confidence_rating"] is not None:
            item["humanAssessment"] = {"confidenceRating": _number(row["human_confidence_rating"])}
        items.append(item)
    return items


def _plain(value: Any) -> Any:
    """DynamoDB values (Decimal, sets, nested maps) as plain JSON-like Python values."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {key: _plain(inner) for key, inner in value.items()}
    if isinstance(value, (list, set, tuple)):
        return [_plain(inner) for inner in value]
    return value


def create_table(client: Any, name: str) -> bool:
    """Create the outcomes table with its `TimeIndex` GSI (PAY_PER_REQUEST) unless it exists.

    Args:
        client: a boto3 DynamoDB client.
        name: table name.

    Returns:
        bool: True if the table was created, False if it already existed.
    """
    try:
        client.create_table(
            TableName=name,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[
                {"AttributeName": "outcomeId", "AttributeType": "S"},
                {"AttributeName": "recordedDate", "AttributeType": "S"},
                {"AttributeName": "recordedAt", "AttributeType": "S"},
            ],
            KeySchema=[{"AttributeName": "outcomeId", "KeyType": "HASH"}],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": TIME_INDEX,
                    "KeySchema": [
                        {"AttributeName": "recordedDate", "KeyType": "HASH"},
                        {"AttributeName": "recordedAt", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                }
            ],
        )
    except client.exceptions.ResourceInUseException:
        return False
    client.get_waiter("table_exists").wait(TableName=name)
    return True


class DynamoOutcomeStore(OutcomeStore):
    """The platform's `opx-outcomes` table, read through the `TimeIndex` GSI one day at a time.

    Items are the platform's nested camelCase with `recordedDate` (YYYY-MM-DD) and `recordedAt`
    (ISO-8601 UTC); reads never Scan the table. Re-writing an `outcome_id` replaces its item,
    so writes are idempotent. The endpoint comes from boto3's own configuration
    (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_DYNAMODB`).

    Args:
        table_name: table name (`settings.outcomes_table`).
        region: AWS region (`settings.region`; default: the given client's).
        client: an existing boto3 DynamoDB client (default: a new one for `region`).
        page_size: items per Query page (None: DynamoDB's 1 MB pages).

    Raises:
        TypeError: neither `region` nor `client` given.
    """

    def __init__(
        self,
        table_name: str,
        *,
        region: str | None = None,
        client: Any = None,
        page_size: int | None = None,
    ) -> None:
        import boto3

        if region is None and client is None:
            raise TypeError("DynamoOutcomeStore: give the region or a client")
        self.table_name = table_name
        self.region = region or client.meta.region_name
        self.client = client or boto3.client("dynamodb", region_name=self.region)
        self.page_size = page_size
        self.rejected_count = 0

    @property
    def location(self) -> str:
        """The DynamoDB table."""
        return f"dynamodb://{self.table_name}"

    def create_table(self) -> bool:
        """Create this store's table if missing; True when created."""
        return create_table(self.client, self.table_name)

    def write(self, frame: pl.DataFrame | pl.LazyFrame, progress: Progress | None = None) -> int:
        """Put every row as an item (batched); returns the number of items written."""
        import boto3

        data = _canonical(frame).unique(subset="outcome_id", keep="first", maintain_order=True)
        if data.is_empty():
            return 0
        # The resource mirrors the client's endpoint, so a given client and its writes agree.
        resource = boto3.resource("dynamodb", region_name=self.region, endpoint_url=self.client.meta.endpoint_url)
        table = resource.Table(self.table_name)
        days = data.with_columns(pl.col("recorded_at").dt.date().alias("__day")).partition_by(
            "__day", as_dict=True, include_key=False
        )
        with table.batch_writer(overwrite_by_pkeys=["outcomeId"]) as batch:
            for done, (_, part) in enumerate(sorted(days.items()), start=1):
                for item in to_items(part):
                    batch.put_item(Item=item)
                if progress is not None:
                    progress(done, len(days))
        return data.height

    def _query_day(self, day: date, window: Window) -> Iterator[dict[str, Any]]:
        from boto3.dynamodb.types import TypeDeserializer

        day_start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        day_end = day_start + timedelta(days=1)
        values: dict[str, Any] = {":d": {"S": day.isoformat()}}
        condition = "recordedDate = :d"
        # The key range is whole seconds around the window (see `_key_floor`), so it holds every
        # stored form of an instant inside it; `read` then filters the parsed instants exactly.
        lower = _key_floor(window.start) if window.start > day_start else None
        upper = _key_ceiling(window.end) if window.end < day_end else None
        if lower is not None and upper is not None:
            condition += " AND recordedAt BETWEEN :lo AND :hi"
            values[":lo"], values[":hi"] = {"S": lower}, {"S": upper}
        elif lower is not None:
            condition += " AND recordedAt >= :lo"
            values[":lo"] = {"S": lower}
        elif upper is not None:
            condition += " AND recordedAt < :hi"
            values[":hi"] = {"S": upper}
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "IndexName": TIME_INDEX,
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": values,
        }
        if self.page_size is not None:
            request["PaginationConfig"] = {"PageSize": self.page_size}
        deserializer = TypeDeserializer()
        for page in self.client.get_paginator("query").paginate(**request):
            for item in page.get("Items", []):
                yield _plain({key: deserializer.deserialize(value) for key, value in item.items()})

    def scan(self, window: Window) -> pl.LazyFrame:
        """Query the window's days (one paginated Query each), validate, filter half-open."""
        return self.read(window).lazy()

    def read(self, window: Window) -> pl.DataFrame:
        """The window's valid outcomes; invalid items are logged and counted in `rejected_count`."""
        items = [item for day in window.days() for item in self._query_day(day, window)]
        if not items:
            return empty_outcomes()
        result = validate_outcomes(items)
        self.rejected_count = result.rejected.height
        if result.rejected.height:
            log.warning(
                "%d invalid outcome items in %s skipped: %s",
                result.rejected.height,
                self.table_name,
                result.summary()["rejected_by_field"],
            )
        return result.valid.filter(_in_window(window))

    def days(self) -> list[date]:
        """The days holding items: an inventory listing (projection of `recordedDate` only)."""
        found: set[str] = set()
        paginator = self.client.get_paginator("scan")
        for page in paginator.paginate(TableName=self.table_name, ProjectionExpression="recordedDate"):
            found.update(item["recordedDate"]["S"] for item in page.get("Items", []) if "recordedDate" in item)
        return sorted(date.fromisoformat(day) for day in found)


def outcome_store(settings: Settings) -> OutcomeStore:
    """The outcome store of the settings' backend: Parquet under OPX_HOME/outcomes; on aws, Parquet on S3 if OPX_OUTCOMES_S3_URI is set, else DynamoDB."""
    from opx_learning.backends import backend_for

    return backend_for(settings).outcome_store()


def load_outcomes(source: OutcomeStore | OutcomeSource, start: Instant, end: Instant) -> pl.DataFrame:
    """Valid outcomes with `recorded_at` in `[start, end)` from any source.

    Args:
        source: an `OutcomeStore`, a store directory, a file (.jsonl/.ndjson/.json/.parquet),
            a DataFrame/LazyFrame or a list of dicts (canonical or camelCase).
        start: window start (date, datetime or ISO string).
        end: window end; a runbook-style `...T23:59:59.999Z` means the end of that day.

    Returns:
        pl.DataFrame: the window's valid rows with the canonical schema (rejected rows dropped;
        use `validate_outcomes` to see them).

    Raises:
        WindowError: start or end is unreadable, or end <= start.
    """
    window = Window.parse(start, end)
    if isinstance(source, OutcomeStore):
        return source.read(window)
    if isinstance(source, (str, Path)) and Path(source).is_dir():
        return LocalOutcomeStore(source).read(window)
    result = validate_outcomes(source)
    if result.rejected.height:
        log.warning(
            "load_outcomes: %d of %d records rejected (use validate_outcomes to see why): %s",
            result.rejected.height,
            result.total,
            "; ".join(result.rejected["reason"].head(3).to_list()),
        )
    return result.valid.filter(_in_window(window))


def scan_outcomes(source: OutcomeStore | OutcomeSource, start: Instant, end: Instant) -> pl.LazyFrame:
    """The valid outcomes with `recorded_at` in `[start, end)` as a lazy frame.

    From a store (or a store directory) nothing is read until the frame is collected, and then
    only the window's days and the columns the query uses: `extract_patterns` and `calibrate`
    on it process windows larger than memory. Files, frames and records are validated first,
    which reads them whole (as `load_outcomes` does).

    Args:
        source: as for `load_outcomes`.
        start: window start (date, datetime or ISO string).
        end: window end; a runbook-style `...T23:59:59.999Z` means the end of that day.

    Returns:
        pl.LazyFrame: the window's valid rows with the canonical schema.

    Raises:
        WindowError: start or end is unreadable, or end <= start.
    """
    window = Window.parse(start, end)
    if isinstance(source, OutcomeStore):
        return source.scan(window)
    if isinstance(source, (str, Path)) and Path(source).is_dir():
        return LocalOutcomeStore(source).scan(window)
    return load_outcomes(source, window.start, window.end).lazy()
