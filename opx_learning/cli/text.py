"""Stored text made safe for a terminal: control characters are shown escaped, never sent raw."""

from __future__ import annotations

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# C0 controls, DEL and C1 controls (ESC starts terminal escape sequences), line and paragraph
# separators, and the bidirectional overrides and isolates that reorder what a terminal shows.
_CONTROLS = [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
_ESCAPES = {
    code: _NAMED.get(chr(code)) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}") for code in _CONTROLS
}


def printable(text: object) -> str:
    """`str(text)` with every control character escaped (`\\x1b`, `\\n`, `\\u202e`), for tables and lines on a terminal.

    `--json` output needs no call: `json.dumps` escapes control characters itself.
    """
    return str(text).translate(_ESCAPES)
