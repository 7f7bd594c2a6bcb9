"""Wire formats shared by every room: one JSON line, and a UTC timestamp as Segment and
Moesif's queries write it."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

import orjson


def dumps(value: Any, *, lenient: bool = False) -> bytes:
    """One JSON line. ``lenient`` values (NaN, huge ints, lone surrogates) go through
    the standard library, which writes them in a form it reads back identically."""
    if not lenient:
        try:
            return orjson.dumps(value)
        except (orjson.JSONEncodeError, TypeError):
            pass
    return json.dumps(value, separators=(",", ":")).encode("ascii")


# An integer literal of 20 digits or more may not fit 64 bits, and orjson reads those as
# floats, losing digits; the standard library keeps them exact.
_BIG_INTEGER = re.compile(rb"(?<![\d.eE])-?\d{20,}(?![\d.eE])")
# The regex costs more than orjson's parse; this test, 20 times cheaper, rules it out first.
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_TWENTY_ZEROS = b"0" * 20


def loads(line: bytes) -> tuple[Any, bool]:
    """A JSON document and whether only the lenient parser could read it exactly.

    Raises ``ValueError`` for what is not JSON, and ``RecursionError`` for JSON nested
    deeper than Python can parse.
    """
    if _TWENTY_ZEROS not in line.translate(_DIGITS_AS_ZERO) or _BIG_INTEGER.search(line) is None:
        try:
            return orjson.loads(line), False
        except orjson.JSONDecodeError:
            pass
    return json.loads(line), True


def format_utc(moment: datetime, millis: int | None = None) -> str:
    """``YYYY-MM-DDTHH:MM:SS.mmmZ``; zero-padded years, unlike strftime on Linux."""
    ms = moment.microsecond // 1000 if millis is None else millis
    return (f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T"
            f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}.{ms:03d}Z")
