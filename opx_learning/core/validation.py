"""Validation of outcome records (docs/design.md#validation): canonical or platform camelCase in, valid and rejected rows out.

Choices beyond docs/design.md:

- Only `predicted_confidence` and `human_confidence_rating` may be null; every other column is
  required (`root_cause` must be 1..500 characters and not blank, `resolution_type` one of the
  enum values, `ttd_ms`/`ttr_ms` finite and >= 0).
- Booleans also accept `"true"/"false"/"1"/"0"` strings and 0/1 integers; `resolution_type` is
  trimmed and upper-cased; `service` is trimmed; ids given as integers become strings.
- Timestamps accept aware datetimes (converted to UTC), naive datetimes and offset-less ISO
  strings (taken as UTC), ISO strings with `Z` or an offset, dates, and epoch milliseconds
  (integers, floats or digit strings).
- A duplicate `outcome_id` is judged against the first *accepted* row with that id: every later
  row carrying it is rejected, so a broken first copy does not block a corrected later one.
- `rejected` holds the canonical columns rendered as text (null when absent) plus `reason`.
- Bounds (docs/bounds.md): `recorded_at`/`validated_at` in 1970-01-01 (inclusive) .. 2200-01-01 (exclusive)
  UTC; `outcome_id`, `incident_id` and `service` (after trimming) at most 256 characters and free of
  control characters (Unicode category Cc: NUL, tab, newline, DEL, C1 controls).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import polars as pl

from opx_learning.core.schema import (
    CAMEL_CASE_PATHS,
    OUTCOME_COLUMNS,
    OUTCOME_SCHEMA,
    RESOLUTION_TYPES,
    UTC_DATETIME,
    outcome_frame,
)
from opx_learning.core.windows import MAX_INSTANT, MIN_INSTANT, Window

LINE_COLUMN = "__line"  # the 1-based line of each row of a file (see core/exports.py)

OutcomeSource = pl.DataFrame | pl.LazyFrame | Iterable[Mapping[str, Any]] | Path | str
# Rows that could not be read at all: (1-based line in the file or None, reason).
Unreadable = list[tuple[int | None, str]]

# Accepted spellings per canonical column, in priority order; dotted names are nested JSON paths.
ALIASES: dict[str, tuple[str, ...]] = {
    column: (column, ".".join(CAMEL_CASE_PATHS[column]), *extra)
    for column, extra in {
        "outcome_id": (),
        "incident_id": (),
        "service": (),
        "recorded_at": (),
        "validated_at": (),
        "true_positive": ("truePositive",),
        "false_positive": ("falsePositive",),
        "root_cause": ("rootCause",),
        "resolution_type": ("resolution.type", "resolutionType"),
        "ttd_ms": ("ttdMs", "timing.ttdMs"),
        "ttr_ms": ("ttrMs", "timing.ttrMs"),
        "predicted_confidence": ("confidence", "classification.confidence"),
        "human_confidence_rating": ("humanConfidenceRating",),
    }.items()
}
ALIASES = {column: tuple(dict.fromkeys(names)) for column, names in ALIASES.items()}

NULLABLE = frozenset({"predicted_confidence", "human_confidence_rating"})
ROOT_CAUSE_MAX = 500
ID_MAX = 256
ID_COLUMNS = ("outcome_id", "incident_id", "service")
TIME_COLUMNS = ("recorded_at", "validated_at")
# Allowed range of the numeric columns the analyst functions compute with (None: unbounded).
NUMERIC_RANGES: dict[str, tuple[float, float | None]] = {
    "predicted_confidence": (0.0, 1.0),
    "human_confidence_rating": (0.0, 1.0),
    "ttd_ms": (0.0, None),
    "ttr_ms": (0.0, None),
}
REJECTED_SCHEMA: dict[str, pl.DataType] = {
    **{c: pl.String() for c in OUTCOME_COLUMNS},
    "reason": pl.String(),
    "line": pl.Int64(),
}

_NESTED = "#nested"
_KNOWN_NAMES = frozenset(name for names in ALIASES.values() for name in names)
_TEXT_LIMIT = 80
_CONTROL = r"\p{Cc}"
_BOUNDS_TEXT = f"{MIN_INSTANT.date()} (inclusive) to {MAX_INSTANT.date()} (exclusive) UTC"
# Epoch milliseconds read as timestamps: 1970-01-01 .. 9999-12-31 (the bounds rule then rejects 2200 on).
_EPOCH_MS_MAX = 253_402_300_799_999
_ISO_FORMAT = "%Y-%m-%dT%H:%M:%S%.fZ"
_TYPE_NAMES = {
    "string": "a string",
    "bool": "a boolean (true/false)",
    "float": "a finite number",
    "time": "a timestamp (ISO-8601 or epoch ms)",
    "resolution": f"one of {', '.join(RESOLUTION_TYPES)}",
}
_COLUMN_KIND = {
    "outcome_id": "string",
    "incident_id": "string",
    "service": "string",
    "recorded_at": "time",
    "validated_at": "time",
    "true_positive": "bool",
    "false_positive": "bool",
    "root_cause": "string",
    "resolution_type": "resolution",
    "ttd_ms": "float",
    "ttr_ms": "float",
    "predicted_confidence": "float",
    "human_confidence_rating": "float",
}


@dataclass(frozen=True)
class ValidationResult:
    """Valid rows (canonical schema) and rejected rows (input as text plus `reason`)."""

    valid: pl.DataFrame
    rejected: pl.DataFrame

    @property
    def total(self) -> int:
        """Number of input rows."""
        return self.valid.height + self.rejected.height

    def counts(self) -> dict[str, int]:
        """Rejections per field named in the reasons (a row with several problems counts for each)."""
        if self.rejected.is_empty():
            return {}
        fields = (
            self.rejected.select(pl.col("reason").str.split("; ").explode().str.extract(r"^([^:]+):", 1))
            .to_series()
            .drop_nulls()
            .value_counts(sort=True)
        )
        return dict(zip(fields[fields.columns[0]].to_list(), fields["count"].to_list(), strict=True))

    def summary(self) -> dict[str, Any]:
        """Total, valid and rejected counts with the rejections per field (JSON-safe)."""
        return {
            "total": self.total,
            "valid": self.valid.height,
            "rejected": self.rejected.height,
            "rejected_by_field": self.counts(),
        }


def validate_outcomes(data: OutcomeSource) -> ValidationResult:
    """Split outcome records into valid rows and rejected rows with a human-readable reason.

    Args:
        data: a polars DataFrame or LazyFrame, an iterable of dicts, or a path (str or Path) to a
            JSON-lines (`.jsonl`/`.ndjson`), JSON array (`.json`), CSV (`.csv`, read as text) or
            Parquet (`.parquet`/`.pq`) file. Columns may be canonical snake_case or the
            platform's nested camelCase (see `ALIASES`). A line of a file that is not UTF-8,
            is not JSON, nests deeper than 64 levels or is not an object is a rejected row;
            a UTF-8 byte order mark at the start is skipped.

    Returns:
        ValidationResult: `valid` has exactly `OUTCOME_SCHEMA`; `rejected` has every canonical
        column as text plus `reason` naming each failing field and its value, joined by "; ",
        and `line`, the row's 1-based line in a JSON-lines, JSON or CSV file (null otherwise).

    Raises:
        FileNotFoundError: a path does not exist.
        ValueError: a file has an unsupported extension, is a JSON document that is neither an
            object nor an array, is CSV without a readable header, or is not readable Parquet.
        TypeError: `data` is none of the accepted kinds.
    """
    frame, unreadable = _to_frame(data)
    valid, rejected = _validate_frame(_flatten(frame))
    if unreadable:
        lines, reasons = zip(*unreadable, strict=True)
        extra = pl.DataFrame(
            {"reason": list(reasons), "line": list(lines)}, schema={"reason": pl.String(), "line": pl.Int64()}
        ).select([pl.lit(None, pl.String).alias(c) for c in OUTCOME_COLUMNS] + [pl.col("reason"), pl.col("line")])
        rejected = pl.concat([rejected, extra])
        if rejected["line"].null_count() < rejected.height:
            rejected = rejected.sort("line", nulls_last=True, maintain_order=True)
    return ValidationResult(valid=valid, rejected=rejected)


def validate_outcomes_by(frame: pl.DataFrame, by: str) -> dict[Any, ValidationResult]:
    """Validate each group of `frame` (rows sharing the value of column `by`) as if alone, in one vectorised pass.

    Equal, group for group, to `validate_outcomes(frame.filter(pl.col(by) == value).drop(by))`: a
    duplicate `outcome_id` is one already accepted in the same group. Used to validate a long
    range of days at once instead of one call per day.

    Args:
        frame: rows in any shape `validate_outcomes` accepts as a DataFrame, plus the column `by`.
        by: the grouping column (e.g. the UTC day), not validated and not kept in the results.

    Returns:
        dict: group value -> its ValidationResult, for every group present in `frame`.
    """
    valid, rejected = _validate_frame(_flatten(frame), by=by)
    valid_parts = valid.partition_by(by, as_dict=True, include_key=False)
    rejected_parts = rejected.partition_by(by, as_dict=True, include_key=False)
    empty_valid, empty_rejected = valid.clear().drop(by), rejected.clear().drop(by)
    return {
        key: ValidationResult(
            valid=valid_parts.get((key,), empty_valid), rejected=rejected_parts.get((key,), empty_rejected)
        )
        for key in frame.get_column(by).unique(maintain_order=True).to_list()
    }


def check_numeric_input(
    outcomes: pl.DataFrame | pl.LazyFrame, window: Window, columns: Sequence[str]
) -> None:
    """Refuse frames whose rows in `window` hold NaN, infinite or out-of-range values in `columns` (nulls pass).

    The analyst functions may be handed frames that never went through `validate_outcomes`;
    such values would otherwise turn silently into NaN or infinite metrics.

    Args:
        outcomes: canonical outcomes (needs `recorded_at` and `columns`).
        window: only rows recorded in this window are checked (the rows a computation reads).
        columns: keys of `NUMERIC_RANGES`.

    Raises:
        ValueError: names each offending column with its count and allowed range.
        TypeError: `outcomes` is not a polars frame.
    """
    frame = outcome_frame(outcomes, ("recorded_at", *columns))
    recorded = pl.col("recorded_at")
    inside = (recorded >= window.start) & (recorded < window.end)
    counts = frame.select((inside & _out_of_range(c)).sum().alias(c) for c in columns).collect().row(0, named=True)
    problems = []
    for column, count in counts.items():
        if count:
            low, high = NUMERIC_RANGES[column]
            allowed = f"outside [{low:g}, {high:g}]" if high is not None else "negative"
            problems.append(f"{column} has {count} value(s) that are NaN, infinite or {allowed}")
    if problems:
        raise ValueError(
            f"outcomes: in {window.start_iso}..{window.end_iso}, {'; '.join(problems)}; "
            "pass validated outcomes (opx.validate_outcomes(data).valid) or drop those rows"
        )


def _out_of_range(column: str) -> pl.Expr:
    low, high = NUMERIC_RANGES[column]
    value = pl.col(column).cast(pl.Float64)
    bad = value.is_nan() | value.is_infinite() | (value < low)
    if high is not None:
        bad = bad | (value > high)
    return bad.fill_null(False)


def _to_frame(data: OutcomeSource) -> tuple[pl.DataFrame, Unreadable]:
    """Read any accepted input into one (possibly nested) frame plus reasons for unreadable rows."""
    if isinstance(data, pl.DataFrame):
        return data, []
    if isinstance(data, pl.LazyFrame):
        return data.collect(), []
    if isinstance(data, (str, Path)):
        return _read_file(Path(data))
    if isinstance(data, Mapping):
        return _from_records([data])
    if type(data).__module__.startswith("pandas") and hasattr(data, "to_dict"):
        return _from_records(data.to_dict("records"))
    if isinstance(data, Iterable):
        return _from_records(list(data))
    raise TypeError(f"data: expected a DataFrame, LazyFrame, list of dicts or file path, got {type(data).__name__}")


def _read_file(path: Path) -> tuple[pl.DataFrame, Unreadable]:
    from opx_learning.core import exports

    if not path.is_file():
        raise FileNotFoundError(f"path: {str(path)!r} does not exist or is not a file")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        try:
            return pl.read_parquet(path), []
        except (pl.exceptions.PolarsError, pl.exceptions.PanicException, OSError) as error:
            raise ValueError(f"path: {str(path)!r} is not a readable Parquet file ({_first_line(error)})") from None
    if suffix in (".jsonl", ".ndjson"):
        frame, rejected = exports.read_json_lines(path)
        return frame, list(rejected)
    if suffix == ".csv":
        try:
            frame, rejected = exports.read_csv_lines(path)
        except ValueError as error:
            raise ValueError(f"path: {str(path)!r} is not readable CSV ({error})") from None
        return frame, list(rejected)
    if suffix == ".json":
        data = path.read_bytes()
        array = exports.read_json_array(data)
        if array is not None:
            return array[0], list(array[1])
        try:
            text = exports.strip_bom(data).decode("utf-8")
            parsed = json.loads(text)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            frame, rejected = exports.read_json_lines(path)  # JSON lines in a .json file
            return frame, list(rejected)
        if isinstance(parsed, dict) and not exports.too_deep(text):
            return _from_records([parsed])
        if isinstance(parsed, dict):
            return pl.DataFrame(), [(1, f"line 1: nested deeper than {exports.MAX_DEPTH} levels")]
        raise ValueError(f"path: {str(path)!r} holds JSON {type(parsed).__name__}, expected an array of objects")
    raise ValueError(
        f"path: {str(path)!r} has unsupported extension {suffix!r} (use .jsonl, .ndjson, .json, .csv or .parquet)"
    )


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0][:200] if lines else type(error).__name__


def _from_records(records: list[Any], extra: tuple[str, ...] = ()) -> tuple[pl.DataFrame, Unreadable]:
    """Build a frame from records; values of mixed types in one column become text; `extra` columns are kept too."""
    flat: list[dict[str, Any]] = []
    unreadable: Unreadable = []
    for position, record in enumerate(records):
        if isinstance(record, Mapping):
            out: dict[str, Any] = {}
            _flatten_record(record, "", out)
            flat.append(out)
        else:
            unreadable.append((None, f"row {position}: expected an object, got {_clip(_render(record))!r}"))
    present = [name for name in _KNOWN_NAMES.union(extra) if any(name in row for row in flat)]
    columns: dict[str, pl.Series] = {}
    for name in sorted(present):
        values = [row.get(name) for row in flat]
        nested = [isinstance(v, (list, tuple, set, Mapping)) for v in values]
        if any(nested):
            # Rendered as text below; the companion column keeps them from passing as strings.
            columns[name + _NESTED] = pl.Series(name + _NESTED, nested, dtype=pl.Boolean())
        columns[name] = _series(name, values)
    if not columns:
        return pl.DataFrame({"__empty": [None] * len(flat)}, schema={"__empty": pl.Null()}), unreadable
    return pl.DataFrame(columns), unreadable


def _flatten_record(record: Mapping[Any, Any], prefix: str, out: dict[str, Any]) -> None:
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            _flatten_record(value, name + ".", out)
        else:
            out[name] = value


def _series(name: str, values: list[Any]) -> pl.Series:
    kinds = {type(v) for v in values if v is not None}
    dtype: pl.DataType | None = None
    if not kinds:
        dtype = pl.Null()
    elif kinds == {str}:
        dtype = pl.String()
    elif kinds == {bool}:
        dtype = pl.Boolean()
    elif kinds == {int}:
        dtype = pl.Int64()
    elif kinds <= {int, float}:
        dtype = pl.Float64()
    if dtype is not None or all(issubclass(k, datetime) for k in kinds) or kinds == {date}:
        try:
            return pl.Series(name, values, dtype=dtype, strict=True)
        except (TypeError, ValueError, OverflowError, pl.exceptions.PolarsError):
            return _text_series(name, values)  # overflowing integers or mixed time zones
    return _text_series(name, values)


def _text_series(name: str, values: list[Any]) -> pl.Series:
    return pl.Series(name, [None if v is None else _render(v) for v in values], dtype=pl.String())


def _render(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        return repr(value)


def _clip(text: str) -> str:
    return text if len(text) <= _TEXT_LIMIT else text[: _TEXT_LIMIT - 3] + "..."


def _flatten(frame: pl.DataFrame) -> pl.DataFrame:
    """Unnest struct columns into dotted names and turn Python-object columns into text."""
    while True:
        structs = [name for name, dtype in frame.schema.items() if isinstance(dtype, pl.Struct)]
        objects = [name for name, dtype in frame.schema.items() if dtype == pl.Object]
        if not structs and not objects:
            return frame
        for name in objects:
            frame = frame.with_columns(_text_series(name, frame[name].to_list()))
        if structs:
            expanded = [
                pl.col(name).struct.field(field.name).alias(f"{name}.{field.name}")
                for name in structs
                for field in frame.schema[name].fields
            ]
            frame = frame.with_columns(expanded).drop(structs)


def _text(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """Render a value of any dtype as text (for rejected rows and messages)."""
    if dtype == pl.String:
        return expr
    if isinstance(dtype, (pl.Struct, pl.List, pl.Array)):
        encoded = pl.struct(expr.alias("v")).struct.json_encode()
        return pl.when(expr.is_not_null()).then(encoded.str.slice(5).str.strip_suffix("}"))
    if dtype == pl.Binary:
        return expr.bin.encode("hex")
    if isinstance(dtype, pl.Datetime):
        return expr.dt.to_string("%Y-%m-%dT%H:%M:%S%.f" + ("%:z" if dtype.time_zone else ""))
    return expr.cast(pl.String, strict=False)


def _pick(frame: pl.DataFrame, column: str) -> tuple[pl.Expr, pl.DataType]:
    """The raw input expression for a canonical column (first non-null alias) and its dtype."""
    present = [name for name in ALIASES[column] if name in frame.columns]
    if not present:
        return pl.lit(None, pl.Null()), pl.Null()
    dtypes = {frame.schema[name] for name in present}
    if len(present) == 1:
        return pl.col(present[0]), frame.schema[present[0]]
    if len(dtypes) == 1:
        return pl.coalesce([pl.col(n) for n in present]), dtypes.pop()
    return pl.coalesce([_text(pl.col(n), frame.schema[n]) for n in present]), pl.String()


def _is_int(dtype: pl.DataType) -> bool:
    return dtype.is_integer()


def _parse_string(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    if dtype == pl.String:
        return expr
    if _is_int(dtype) or isinstance(dtype, (pl.Categorical, pl.Enum)):
        return expr.cast(pl.String)
    return pl.lit(None, pl.String)


def _parse_bool(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    if dtype == pl.Boolean:
        return expr
    if dtype == pl.String:
        words = {"true": True, "false": False, "1": True, "0": False}
        return expr.str.strip_chars().str.to_lowercase().replace_strict(
            words, default=None, return_dtype=pl.Boolean
        )
    if _is_int(dtype):
        return pl.when(expr == 1).then(True).when(expr == 0).then(False).otherwise(None)
    return pl.lit(None, pl.Boolean)


def _parse_float(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    if dtype.is_numeric():
        value = expr.cast(pl.Float64)
    elif dtype == pl.String:
        value = expr.str.strip_chars().cast(pl.Float64, strict=False)
    else:
        return pl.lit(None, pl.Float64)
    return pl.when(value.is_finite()).then(value)


def _from_epoch_ms(value: pl.Expr) -> pl.Expr:
    in_range = (value >= 0) & (value <= _EPOCH_MS_MAX)
    millis = pl.when(in_range).then(value).cast(pl.Int64)
    return (millis * 1000).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")


def _parse_time(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    if isinstance(dtype, pl.Datetime):
        value = expr.dt.cast_time_unit("us")
        if dtype.time_zone is None:
            return value.dt.replace_time_zone("UTC")
        return value.dt.convert_time_zone("UTC")
    if dtype == pl.Date:
        return expr.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    if _is_int(dtype):
        return _from_epoch_ms(expr.cast(pl.Int64, strict=False))
    if dtype.is_float():
        return _from_epoch_ms(pl.when(expr.is_finite()).then(expr).floor())
    if dtype != pl.String:
        return pl.lit(None, UTC_DATETIME)
    text = expr.str.strip_chars().str.replace(" ", "T", literal=True).str.replace(r"[zZ]$", "+00:00")
    aware = text.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%z", strict=False, time_zone="UTC", time_unit="us")
    naive = text.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f", strict=False, time_unit="us").dt.replace_time_zone("UTC")
    day = text.str.to_date("%Y-%m-%d", strict=False).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    digits = pl.when(text.str.contains(r"^\d{1,15}$")).then(text).cast(pl.Int64, strict=False)
    return pl.coalesce([aware, naive, day, _from_epoch_ms(digits)])


def _parse_resolution(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    if dtype == OUTCOME_SCHEMA["resolution_type"]:
        return expr
    text = _text(expr, dtype).str.strip_chars().str.to_uppercase()
    return text.cast(OUTCOME_SCHEMA["resolution_type"], strict=False)


_PARSERS = {
    "string": _parse_string,
    "bool": _parse_bool,
    "float": _parse_float,
    "time": _parse_time,
    "resolution": _parse_resolution,
}


def _validate_frame(frame: pl.DataFrame, by: str | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    raw: dict[str, pl.Expr] = {}
    raw_dtypes: dict[str, pl.DataType] = {}
    for column in OUTCOME_COLUMNS:
        raw[column], raw_dtypes[column] = _pick(frame, column)

    parsed = {column: _PARSERS[_COLUMN_KIND[column]](raw[column], raw_dtypes[column]) for column in OUTCOME_COLUMNS}
    for column in OUTCOME_COLUMNS:
        nested = [pl.col(name + _NESTED) for name in ALIASES[column] if name + _NESTED in frame.columns]
        if nested:
            parsed[column] = pl.when(pl.any_horizontal(nested).fill_null(False)).then(None).otherwise(parsed[column])
    parsed["service"] = parsed["service"].str.strip_chars()

    columns = [raw[c].alias(f"raw:{c}") for c in OUTCOME_COLUMNS] + [
        parsed[c].alias(c) for c in OUTCOME_COLUMNS
    ]
    # with_columns (unlike select) broadcasts literal-only columns to the frame's height.
    kept = [by] if by else []
    line = [LINE_COLUMN] if LINE_COLUMN in frame.columns else []
    work = frame.with_columns(columns).select([e.meta.output_name() for e in columns] + kept + line)
    flags = _flags(work)
    # The index is added after the flags: built beside multi-chunk Parquet columns it
    # would force a rechunking copy of the whole work frame.
    work = work.with_columns(**flags).with_row_index("row:index")
    flag_names = list(flags)
    work = _flag_duplicates(work, flag_names, by)
    flag_names.append("flag:duplicate")
    bad = pl.any_horizontal([pl.col(name) for name in flag_names])

    valid = work.filter(~bad).select([pl.col(c) for c in [*OUTCOME_COLUMNS, *kept]])
    # One chunk: filtering a multi-chunk frame can leave empty chunks in some columns, and string
    # expressions under when/then over such columns panic inside polars (binview index assertion).
    rejected_rows = work.filter(bad).rechunk()
    reasons = _reasons(rejected_rows, flag_names)
    rejected = rejected_rows.select(
        [_text(pl.col(f"raw:{c}"), raw_dtypes[c]).cast(pl.String).alias(c) for c in OUTCOME_COLUMNS]
        + [reasons.alias("reason")]
        + [pl.col(LINE_COLUMN).cast(pl.Int64).alias("line") if line else pl.lit(None, pl.Int64).alias("line")]
        + [pl.col(c) for c in kept]
    )
    return valid, rejected


def _flags(work: pl.DataFrame) -> dict[str, pl.Expr]:
    """One boolean column per rule; null-safe (a rule that does not apply is False)."""
    flags: dict[str, pl.Expr] = {}
    for column in OUTCOME_COLUMNS:
        raw_null = pl.col(f"raw:{column}").is_null()
        if column not in NULLABLE:
            flags[f"flag:missing:{column}"] = raw_null
        flags[f"flag:type:{column}"] = ~raw_null & pl.col(column).is_null()
    flags["flag:empty:service"] = pl.col("service").str.len_bytes() == 0
    flags["flag:order"] = (pl.col("validated_at") < pl.col("recorded_at")).fill_null(False)
    flags["flag:both"] = (pl.col("true_positive") & pl.col("false_positive")).fill_null(False)
    root_cause = pl.col("root_cause")
    # Bytes bound characters from above, so the costlier character count only decides long values.
    too_long = (root_cause.str.len_bytes() > ROOT_CAUSE_MAX) & (root_cause.str.len_chars() > ROOT_CAUSE_MAX)
    flags["flag:length:root_cause"] = ((root_cause.str.strip_chars() == "") | too_long).fill_null(False)
    for column in ("ttd_ms", "ttr_ms"):
        flags[f"flag:negative:{column}"] = (pl.col(column) < 0).fill_null(False)
    for column in ("predicted_confidence", "human_confidence_rating"):
        flags[f"flag:range:{column}"] = ((pl.col(column) < 0) | (pl.col(column) > 1)).fill_null(False)
    for column in TIME_COLUMNS:
        flags[f"flag:bounds:{column}"] = (pl.col(column) < MIN_INSTANT) | (pl.col(column) >= MAX_INSTANT)
    for column in ID_COLUMNS:
        value = pl.col(column)
        flags[f"flag:length:{column}"] = (value.str.len_bytes() > ID_MAX) & (value.str.len_chars() > ID_MAX)
        flags[f"flag:control:{column}"] = value.str.contains(_CONTROL)
    return {name: expr.fill_null(False) for name, expr in flags.items()}


def _flag_duplicates(work: pl.DataFrame, flag_names: list[str], by: str | None = None) -> pl.DataFrame:
    """Flag every row whose outcome_id was already taken by an earlier accepted row (of the same `by` group)."""
    keys = ["outcome_id", *([by] if by else [])]
    identity = pl.col("outcome_id") if by is None else pl.struct(keys)
    # A sorted 64-bit hash finds repeats far faster than hashing the strings into a table.
    hashes = work.select(identity.filter(pl.col("outcome_id").is_not_null()).hash().sort().alias("h"))
    repeated = hashes.filter(pl.col("h") == pl.col("h").shift(1)).unique()["h"]
    if repeated.is_empty():
        return work.with_columns(pl.lit(False).alias("flag:duplicate"))
    ok = ~pl.any_horizontal([pl.col(name) for name in flag_names])
    candidates = work.filter(identity.hash().is_in(repeated.implode())).select(*keys, "row:index", ok.alias("ok"))
    first = candidates.filter("ok").group_by(keys).agg(pl.col("row:index").min().alias("first"))
    later = candidates.join(first, on=keys).filter(pl.col("row:index") > pl.col("first"))
    return work.with_columns(pl.col("row:index").is_in(later["row:index"].implode()).alias("flag:duplicate"))


def _reasons(rejected: pl.DataFrame, flag_names: list[str]) -> pl.Expr:
    """Human-readable reason per rejected row: every failing rule, joined by "; "."""
    raw_text = {
        c: _text(pl.col(f"raw:{c}"), rejected.schema[f"raw:{c}"]).cast(pl.String) for c in OUTCOME_COLUMNS
    }

    def shown(column: str) -> pl.Expr:
        text = raw_text[column].str.replace_all(_CONTROL, "\ufffd")
        clipped = pl.when(text.str.len_chars() > _TEXT_LIMIT).then(
            text.str.slice(0, _TEXT_LIMIT - 3) + pl.lit("...")
        ).otherwise(text)
        return pl.concat_str([pl.lit("'"), clipped, pl.lit("'")])

    def iso(column: str) -> pl.Expr:
        return pl.col(column).dt.to_string(_ISO_FORMAT)

    messages: dict[str, pl.Expr] = {}
    for column in OUTCOME_COLUMNS:
        messages[f"flag:missing:{column}"] = pl.lit(f"{column}: missing (required)")
        kind = _TYPE_NAMES[_COLUMN_KIND[column]]
        messages[f"flag:type:{column}"] = pl.format(f"{column}: {{}} is not {kind}", shown(column))
    messages["flag:empty:service"] = pl.format("service: {} is empty after trimming", shown("service"))
    messages["flag:order"] = pl.format(
        "validated_at: {} is before recorded_at {}", iso("validated_at"), iso("recorded_at")
    )
    messages["flag:both"] = pl.lit("true_positive/false_positive: both are true")
    messages["flag:length:root_cause"] = pl.format(
        f"root_cause: {{}} has length {{}} (must be 1..{ROOT_CAUSE_MAX} characters, not blank)",
        shown("root_cause"),
        pl.col("root_cause").str.len_chars(),
    )
    for column in ("ttd_ms", "ttr_ms"):
        messages[f"flag:negative:{column}"] = pl.format(f"{column}: {{}} is negative", pl.col(column))
    for column in ("predicted_confidence", "human_confidence_rating"):
        messages[f"flag:range:{column}"] = pl.format(f"{column}: {{}} is outside [0, 1]", pl.col(column))
    for column in TIME_COLUMNS:
        messages[f"flag:bounds:{column}"] = pl.format(
            f"{column}: {{}} is outside the supported range {_BOUNDS_TEXT}", shown(column)
        )
    for column in ID_COLUMNS:
        messages[f"flag:length:{column}"] = pl.format(
            f"{column}: {{}} has length {{}} (at most {ID_MAX} characters)", shown(column), pl.col(column).str.len_chars()
        )
        # Every control character (category Cc) is below U+0100: its code point is the last UTF-8 byte.
        code = pl.col(column).str.extract(f"({_CONTROL})", 1).str.encode("hex").str.slice(-2).str.to_uppercase()
        messages[f"flag:control:{column}"] = pl.format(
            f"{column}: {{}} contains control character U+00{{}} (control characters are not allowed)",
            shown(column),
            code,
        )
    messages["flag:duplicate"] = pl.format(
        "outcome_id: {} is a duplicate (first accepted occurrence kept)", shown("outcome_id")
    )
    parts = [pl.when(pl.col(name)).then(messages[name]) for name in flag_names]
    return pl.concat_str(parts, separator="; ", ignore_nulls=True)
