"""Reading outcome export files line by line in blocks: one bad line costs that line, never the file.

JSON lines and CSV are read in blocks of about `BLOCK_BYTES` through polars' parsers. A block
that polars refuses is split into `_SPLIT` pieces, and each refused piece again, down to the
single lines at fault; every other line keeps the fast path. Before parsing, lines that are not
UTF-8 or that nest deeper than `MAX_DEPTH` levels are set aside as rejected (numpy over the
block's bytes; only lines with more than `MAX_DEPTH` brackets get a character-level check). A
UTF-8 byte order mark at the start of the file is skipped. Every row carries its 1-based line
number (`LINE_COLUMN`); every rejected line is a `(line, reason)` pair.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from opx_learning.core.validation import LINE_COLUMN

BLOCK_BYTES = 8 * 1024 * 1024
MAX_DEPTH = 64
BOM = b"\xef\xbb\xbf"
_SPLIT = 16
_TEXT_LIMIT = 80
_NEWLINE, _SPACE, _TAB, _CR = 10, 32, 9, 13
_OPENS = (ord("["), ord("{"))
_SURROGATE = re.compile("[\udc80-\udcff]")
# Errors polars raises on input it cannot parse; a panic is a BaseException, named explicitly.
_PARSE_ERRORS: tuple[type[BaseException], ...] = (
    pl.exceptions.PolarsError,
    pl.exceptions.PanicException,
    ValueError,
    TypeError,
    OverflowError,
)

Rejected = list[tuple[int | None, str]]


@dataclass
class _Lines:
    """Line boundaries of one block: `starts[i]:ends[i]` is line `first + i` (without its newline)."""

    data: bytes
    starts: np.ndarray
    ends: np.ndarray
    first: int

    @property
    def numbers(self) -> np.ndarray:
        return np.arange(self.first, self.first + len(self.starts), dtype=np.int64)


def read_json_lines(path: Path) -> tuple[pl.DataFrame, Rejected]:
    """A JSON-lines file as one frame (flattened, with `LINE_COLUMN`) and its rejected lines."""
    frames: list[pl.DataFrame] = []
    records: list[dict[str, Any]] = []
    rejected: Rejected = []
    for lines in _blocks(path):
        keep = _screen(lines, rejected, depth=True) & _non_blank(lines)
        # Lines that cannot be an object (truncated, joined, not starting with `{`) skip the parser.
        misshapen = np.flatnonzero(keep & ~_object_shaped(lines))
        for index in misshapen.tolist():
            _single_line(lines, index, records, rejected, csv=False)
        _blank(lines, misshapen)
        keep[misshapen] = False
        _parse(lines, np.flatnonzero(keep), _ndjson, frames, records, rejected)
    return _assemble(frames, records), rejected


def read_csv_lines(path: Path) -> tuple[pl.DataFrame, Rejected]:
    """A CSV file (header first, read as text) as one frame with `LINE_COLUMN`, and its rejected lines.

    Lines are rows: a quoted field holding a newline cannot be told apart from two lines, so a
    file with such fields is read whole and its rows carry no line number.
    """
    data = strip_bom(path.read_bytes())
    end = data.find(b"\n")
    header, body_start = (data, len(data)) if end < 0 else (data[:end], end + 1)
    try:
        header.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("the header line is not valid UTF-8") from None
    if not header.strip():
        raise ValueError("the header line is empty")
    frames: list[pl.DataFrame] = []
    rejected: Rejected = []

    def parse(piece: bytes) -> pl.DataFrame:
        return pl.read_csv(io.BytesIO(header + b"\n" + piece + b"\n"), infer_schema=False,
                           raise_if_empty=False, truncate_ragged_lines=True)

    lines = _split_lines(data[body_start:], first=2)
    if len(lines.starts):
        screened = _screen(lines, rejected, depth=False)
        try:
            whole = parse(lines.data[: int(lines.ends[-1])])
        except _PARSE_ERRORS:
            whole = None
        if whole is not None and whole.height != len(lines.starts):
            # Quoted newlines: rows are not lines.
            return whole, rejected
        if whole is not None:
            frames.append(whole.with_columns(pl.Series(LINE_COLUMN, lines.numbers)))
        else:
            _parse(lines, np.arange(len(lines.starts)), parse, frames, [], rejected, count_blank=True)
        blank = set((lines.numbers[~(screened & _non_blank(lines))]).tolist())
        frames = [frame.filter(~pl.col(LINE_COLUMN).is_in(list(blank))) if blank else frame for frame in frames]
    else:
        frames.append(parse(b"").with_columns(pl.lit(None, pl.Int64).alias(LINE_COLUMN)))
    return _assemble(frames, []), rejected


def read_json_array(data: bytes) -> tuple[pl.DataFrame, Rejected] | None:
    """A JSON array of objects read element by element (None when `data` does not start with `[`).

    Each element keeps the line it starts on; an element that is not an object, not UTF-8,
    nested too deep or broken is a rejected row. A break the parser cannot step over (an
    unterminated element) rejects the rest of the file as one row.
    """
    data = strip_bom(data)
    try:
        text = data.decode("utf-8")
        clean = True
    except UnicodeDecodeError:
        text = data.decode("utf-8", "surrogateescape")
        clean = False
    position = _skip_space(text, 0)
    if not text.startswith("[", position):
        return None
    decoder = json.JSONDecoder()
    records: list[dict[str, Any]] = []
    rejected: Rejected = []
    line, seen = 1, 0
    position = _skip_space(text, position + 1)
    if text.startswith("]", position):
        return _assemble([], []), []
    while position < len(text):
        line += text.count("\n", seen, position)
        seen = position
        start = position
        value: Any = None
        error: str | None = None
        try:
            value, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError as problem:
            error = f"invalid JSON ({problem.msg})"
        except RecursionError:
            error = f"nested deeper than {MAX_DEPTH} levels"
        if error is not None:
            end = _value_end(text, start)
            if end is None:
                rejected.append((line, f"line {line}: {error}: {_clip(text[start:])!r}"))
                break
            if error.startswith("invalid") and _depth(text, start, end) > MAX_DEPTH:
                error = f"nested deeper than {MAX_DEPTH} levels"
            rejected.append((line, f"line {line}: {error}: {_clip(text[start:end])!r}"))
            position = end
        elif not clean and _SURROGATE.search(text, start, position):
            rejected.append((line, f"line {line}: not valid UTF-8"))
        elif too_deep(text, start, position):
            rejected.append((line, f"line {line}: nested deeper than {MAX_DEPTH} levels"))
        elif not isinstance(value, dict):
            rejected.append((line, f"line {line}: expected an object, got {_clip(_render(value))!r}"))
        else:
            value[LINE_COLUMN] = line
            records.append(value)
        position = _skip_space(text, position)
        if text.startswith(",", position):
            position = _skip_space(text, position + 1)
        elif text.startswith("]", position):
            trailing = _skip_space(text, position + 1)
            if trailing < len(text):
                line += text.count("\n", seen, trailing)
                rejected.append((line, f"line {line}: unexpected text after the array: {_clip(text[trailing:])!r}"))
            break
        elif position < len(text):
            line += text.count("\n", seen, position)
            seen = position
            rejected.append((line, f"line {line}: expected ',' or ']' between elements: {_clip(text[position:])!r}"))
            break
    else:
        rejected.append((line, f"line {line}: the array is not closed (truncated file?)"))
    return _assemble([], records), rejected


def strip_bom(data: bytes) -> bytes:
    """`data` without a leading UTF-8 byte order mark."""
    return data.removeprefix(BOM)


def _blocks(path: Path) -> Iterator[_Lines]:
    """The file in blocks of about `BLOCK_BYTES` ending at a newline, with their first line numbers."""
    first = 1
    carry = b""
    with path.open("rb") as handle:
        head = True
        while True:
            chunk = handle.read(BLOCK_BYTES)
            data = carry + chunk
            if head:
                data, head = strip_bom(data), False
            if not chunk:
                if data:
                    yield _split_lines(data, first)
                return
            cut = data.rfind(b"\n")
            if cut < 0:
                carry = data
                continue
            block, carry = data[: cut + 1], data[cut + 1 :]
            lines = _split_lines(block, first)
            first += len(lines.starts)
            yield lines


def _split_lines(data: bytes, first: int) -> _Lines:
    array = np.frombuffer(data, dtype=np.uint8)
    breaks = np.flatnonzero(array == _NEWLINE)
    starts = np.concatenate([[0], breaks + 1])
    ends = np.concatenate([breaks, [len(data)]])
    if len(starts) and starts[-1] == len(data):  # nothing after the last newline
        starts, ends = starts[:-1], ends[:-1]
    return _Lines(data, starts, ends, first)


def _count_per_line(lines: _Lines, positions: np.ndarray) -> np.ndarray:
    """Per line, how many of the (sorted) byte `positions` fall inside it."""
    return np.searchsorted(positions, lines.ends) - np.searchsorted(positions, lines.starts)


def _non_blank(lines: _Lines) -> np.ndarray:
    """Lines holding something besides JSON whitespace; only lines that start with whitespace are scanned."""
    array = np.frombuffer(lines.data, dtype=np.uint8)
    empty = lines.ends == lines.starts
    heads = array[np.minimum(lines.starts, max(len(array) - 1, 0))] if len(array) else np.zeros(0, np.uint8)
    spaced = ~empty & np.isin(heads, (_SPACE, _TAB, _CR))
    keep = ~empty
    for index in np.flatnonzero(spaced).tolist():
        keep[index] = bool(lines.data[int(lines.starts[index]) : int(lines.ends[index])].strip(b" \t\r"))
    return keep


def _object_shaped(lines: _Lines) -> np.ndarray:
    """Lines whose first and last non-blank bytes are `{` and `}` (only lines with surrounding blanks are scanned)."""
    array = np.frombuffer(lines.data, dtype=np.uint8)
    shaped = np.zeros(len(lines.starts), dtype=bool)
    filled = lines.ends > lines.starts
    if not filled.any() or not len(array):
        return shaped
    heads = array[lines.starts[filled]]
    tails = array[lines.ends[filled] - 1]
    crlf = tails == _CR
    tails = np.where(crlf & (lines.ends[filled] - 2 >= lines.starts[filled]), array[np.maximum(lines.ends[filled] - 2, 0)], tails)
    shaped[filled] = (heads == ord("{")) & (tails == ord("}"))
    blanks = (_SPACE, _TAB, _CR)
    for index in np.flatnonzero(filled & ~shaped & (np.isin(array[np.minimum(lines.starts, len(array) - 1)], blanks)
                                                    | np.isin(array[np.maximum(lines.ends - 1, 0)], blanks))).tolist():
        text = lines.data[int(lines.starts[index]) : int(lines.ends[index])].strip(b" \t\r")
        shaped[index] = text.startswith(b"{") and text.endswith(b"}")
    return shaped


def _screen(lines: _Lines, rejected: Rejected, *, depth: bool) -> np.ndarray:
    """Lines that are UTF-8 (and, with `depth`, nested at most `MAX_DEPTH` deep); the others are blanked and rejected."""
    bad: dict[int, str] = {}
    start = 0
    data = lines.data
    while True:
        try:
            data[start:].decode("utf-8")
            break
        except UnicodeDecodeError as error:
            index = int(np.searchsorted(lines.ends, start + error.start, side="left"))
            bad[index] = "not valid UTF-8"
            if index + 1 >= len(lines.starts):
                break
            start = int(lines.starts[index + 1])
    if depth:
        array = np.frombuffer(data, dtype=np.uint8)
        opens = _count_per_line(lines, np.flatnonzero((array == _OPENS[0]) | (array == _OPENS[1])))
        for index in np.flatnonzero(opens > MAX_DEPTH).tolist():
            if index not in bad and _depth(data, int(lines.starts[index]), int(lines.ends[index])) > MAX_DEPTH:
                bad[index] = f"nested deeper than {MAX_DEPTH} levels"
    keep = np.ones(len(lines.starts), dtype=bool)
    if bad:
        blanked = bytearray(data)
        for index, reason in sorted(bad.items()):
            number = lines.first + index
            begin, end = int(lines.starts[index]), int(lines.ends[index])
            shown = data[begin:end].decode("utf-8", "replace")
            rejected.append((number, f"line {number}: {reason}: {_clip(shown.strip())!r}"))
            blanked[begin:end] = b" " * (end - begin)
            keep[index] = False
        lines.data = bytes(blanked)
    return keep


def _depth(text: str | bytes, start: int, end: int) -> int:
    """The deepest nesting of brackets between `start` and `end`, ignoring those inside strings."""
    quote, backslash = ('"', "\\") if isinstance(text, str) else (34, 92)
    opens = ("[", "{") if isinstance(text, str) else _OPENS
    closes = ("]", "}") if isinstance(text, str) else (93, 125)
    level = deepest = 0
    inside = escaped = False
    for char in text[start:end]:
        if inside:
            if escaped:
                escaped = False
            elif char == backslash:
                escaped = True
            elif char == quote:
                inside = False
        elif char == quote:
            inside = True
        elif char in opens:
            level += 1
            deepest = max(deepest, level)
        elif char in closes:
            level -= 1
    return deepest


def too_deep(text: str, start: int = 0, end: int | None = None) -> bool:
    """Whether the JSON text between `start` and `end` nests deeper than `MAX_DEPTH` levels."""
    end = len(text) if end is None else end
    if text.count("[", start, end) + text.count("{", start, end) <= MAX_DEPTH:
        return False
    return _depth(text, start, end) > MAX_DEPTH


def _value_end(text: str, start: int) -> int | None:
    """Where the JSON value starting at `start` ends: after its closing bracket, or before the next `,`/`]` at its level."""
    level = 0
    inside = escaped = False
    for index in range(start, len(text)):
        char = text[index]
        if inside:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                inside = False
        elif char == '"':
            inside = True
        elif char in "[{":
            level += 1
        elif char in "]}":
            if level == 0:
                return index
            level -= 1
            if level == 0:
                return index + 1
        elif char == "," and level == 0:
            return index
    return None


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    return position


LineParser = Callable[[bytes], pl.DataFrame]


def _ndjson(piece: bytes) -> pl.DataFrame:
    return pl.read_ndjson(io.BytesIO(piece), infer_schema_length=None)


def _parse(
    lines: _Lines,
    candidates: np.ndarray,
    parser: LineParser,
    frames: list[pl.DataFrame],
    records: list[dict[str, Any]],
    rejected: Rejected,
    *,
    count_blank: bool = False,
) -> None:
    """Parse the candidate lines (indexes into `lines`) in as few pieces as polars accepts."""
    pending: list[tuple[np.ndarray, bool]] = [(candidates, count_blank)]
    numbers = lines.numbers
    while pending:
        group, checked = pending.pop()
        if not len(group):
            continue
        first, last = int(group[0]), int(group[-1])
        # A piece is a contiguous byte range; the lines between candidates are blank (or blanked).
        piece = lines.data[int(lines.starts[first]) : int(lines.ends[last])]
        expected = (last - first + 1) if count_blank else len(group)
        try:
            frame = parser(piece)
            ok = frame.height == expected
        except _PARSE_ERRORS:
            ok = False
        if ok:
            if count_blank:
                frame = frame.with_columns(pl.Series(LINE_COLUMN, numbers[first : last + 1]))
            else:
                frame = frame.with_columns(pl.Series(LINE_COLUMN, numbers[group]))
            frames.append(frame)
            continue
        if len(group) == 1:
            _single_line(lines, first, records, rejected, csv=count_blank)
            continue
        if not checked:
            # One vectorised pass finds the lines that are not JSON objects; only those go to Python.
            broken = _not_objects(lines, group)
            for index in broken.tolist():
                _single_line(lines, index, records, rejected, csv=False)
            _blank(lines, broken)
            pending.append((np.setdiff1d(group, broken, assume_unique=True), True))
            continue
        pending.extend((part, True) for part in reversed(np.array_split(group, min(_SPLIT, len(group)))))


def _not_objects(lines: _Lines, group: np.ndarray) -> np.ndarray:
    """The lines of `group` that are not one well-formed JSON object."""
    first, last = int(group[0]), int(group[-1])
    text = lines.data[int(lines.starts[first]) : int(lines.ends[last])].decode("utf-8")
    series = pl.Series(text.split("\n"), dtype=pl.String)
    ok = series.str.json_path_match("$").is_not_null() & series.str.strip_chars_start().str.starts_with("{")
    bad = np.flatnonzero(~ok.fill_null(False).to_numpy()) + first
    return np.intersect1d(bad, group, assume_unique=True)


def _blank(lines: _Lines, indexes: np.ndarray) -> None:
    if not len(indexes):
        return
    blanked = bytearray(lines.data)
    for index in indexes.tolist():
        begin, end = int(lines.starts[index]), int(lines.ends[index])
        blanked[begin:end] = b" " * (end - begin)
    lines.data = bytes(blanked)


def _single_line(lines: _Lines, index: int, records: list[dict[str, Any]], rejected: Rejected, *, csv: bool) -> None:
    """A line polars refused alone: Python's json may still read it (NaN, huge numbers); else a rejected line."""
    number = lines.first + index
    raw = lines.data[int(lines.starts[index]) : int(lines.ends[index])].decode("utf-8", "replace")
    if csv:
        rejected.append((number, f"line {number}: not readable as CSV: {_clip(raw.strip())!r}"))
        return
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as error:
        rejected.append((number, f"line {number}: invalid JSON ({error.msg}): {_clip(raw.strip())!r}"))
        return
    except RecursionError:
        rejected.append((number, f"line {number}: nested deeper than {MAX_DEPTH} levels: {_clip(raw.strip())!r}"))
        return
    if isinstance(value, dict):
        value[LINE_COLUMN] = number
        records.append(value)
    else:
        rejected.append((number, f"line {number}: expected an object, got {_clip(_render(value))!r}"))


def _assemble(frames: list[pl.DataFrame], records: list[dict[str, Any]]) -> pl.DataFrame:
    """One flat frame from the parsed pieces and the records read by Python, sorted by line."""
    from opx_learning.core.validation import _flatten, _from_records, _text

    parts = [_flatten(frame) for frame in frames]
    if records:
        parts.append(_from_records(records, extra=(LINE_COLUMN,))[0])
    parts = [part for part in parts if part.width]
    if not parts:
        return pl.DataFrame(schema={LINE_COLUMN: pl.Int64()})
    if len(parts) == 1:
        return parts[0]
    # A column typed differently in different pieces (text in one, numbers in another) becomes text.
    kinds: dict[str, set[pl.DataType]] = {}
    for part in parts:
        for name, dtype in part.schema.items():
            if dtype != pl.Null:
                kinds.setdefault(name, set()).add(dtype)
    mixed = {name for name, dtypes in kinds.items() if len(dtypes) > 1 and not all(d.is_numeric() for d in dtypes)}
    if mixed:
        parts = [
            part.with_columns(_text(pl.col(n), part.schema[n]).cast(pl.String).alias(n) for n in mixed if n in part.columns)
            for part in parts
        ]
    frame = pl.concat(parts, how="diagonal_relaxed")
    lines = frame[LINE_COLUMN]
    return frame if lines.null_count() or lines.is_sorted() else frame.sort(LINE_COLUMN)


def _render(value: Any) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _clip(text: str) -> str:
    return text if len(text) <= _TEXT_LIMIT else text[: _TEXT_LIMIT - 3] + "..."
