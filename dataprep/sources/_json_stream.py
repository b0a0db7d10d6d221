"""Streaming big JSON files with ijson, keeping their text and numbers exactly as written.

ijson's C backend (yajl2_c) is fast but alters UTF-16 escapes that are not a valid surrogate pair:
a lone `"\\ud800"` becomes `"?"`, two high halves become an unrelated character, a lone low half
raises UnicodeDecodeError. A file whose bytes hold such an escape is parsed with ijson's pure-Python
backend instead, which keeps the lone surrogate (the engine then rejects its record as `bad_text`).
Files are parsed with `use_float=False`: integers of any size stay exact, other numbers come back
as `Decimal` (a double would overflow the C backend on `1e400`); `plain` turns them into floats.
"""

from __future__ import annotations

import os
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import ijson

PRESERVING_BACKEND = ijson.get_backend("python")


def _lone_surrogate_escape(d: bytes) -> re.Pattern[bytes]:
    """A `\\u<d>800`–`\\u<d>FFF` escape (`d`: `d` or `D`) that is not half of a valid pair. Escaped
    backslashes are not told apart (`\\\\ud800` is text): they only give false positives, which cost speed."""
    return re.compile(
        rb"\\u" + d + rb"(?:"
        rb"[89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F])"  # a high half not followed by a low one
        rb"|(?<![^\\]\\u[dD][89abAB][0-9a-fA-F]{2}\\u" + d + rb")[c-fC-F]"  # a low one not after a high one
        rb")"
    )


LONE_SURROGATE_ESCAPES = [_lone_surrogate_escape(b"d"), _lone_surrogate_escape(b"D")]
"""One pattern per case of the `d`: a 3-byte literal prefix lets the regex engine skip ahead fast."""
SCAN_CONTEXT = 16
"""Bytes on either side of a match that decide it (the pattern and its look-arounds are shorter)."""
SCAN_BLOCK = 1 << 24
ESTIMATE_BYTES = 2**20
"""The head of a file its record count is estimated from."""


def has_lone_surrogate_escape(path: Path, block: int = SCAN_BLOCK) -> bool:
    """Whether the file's bytes hold a lone surrogate escape (read `block` bytes at a time, ≥ 32)."""
    with open(path, "rb") as handle:
        window, start = handle.read(block), 0
        while following := handle.read(block):
            # a match this close to the end may be cancelled by the following bytes: checked with them
            settled = len(window) - SCAN_CONTEXT
            if _first_match(window, start) < settled:
                return True
            window, start = window[settled - SCAN_CONTEXT :] + following, SCAN_CONTEXT
    return _first_match(window, start) < len(window)


def _first_match(window: bytes, start: int) -> int:
    """Where the first lone surrogate escape at or after `start` begins; `len(window)` if none."""
    matches = (pattern.search(window, start) for pattern in LONE_SURROGATE_ESCAPES)
    return min((match.start() for match in matches if match is not None), default=len(window))


def estimated_count(path: Path, marker: bytes) -> int:
    """About how many records a file holds: the occurrences of `marker` (a newline, a key such as
    `b'"question_id"'`) in its first `ESTIMATE_BYTES`, scaled to its size."""
    with open(path, "rb") as handle:
        head = handle.read(ESTIMATE_BYTES)
        size = os.fstat(handle.fileno()).st_size
    return round(head.count(marker) * size / len(head)) if head else 0


def ijson_backend(path: Path) -> Any:
    """The ijson backend that reads `path` exactly: the C one unless the file holds a lone surrogate."""
    return PRESERVING_BACKEND if has_lone_surrogate_escape(path) else ijson


def plain(value: Any) -> Any:
    """A value ijson produced with its `Decimal`s turned into floats, so it serializes as JSON
    (a number beyond double range becomes infinite: the engine rejects a sample holding one)."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, list):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    return value
