"""JSON that survives the bad data: what orjson cannot write or read, the standard library can.

The stand-ins serve documents "exactly as loaded", and generated or
hand-written bad data may hold NaN, lone surrogates or integers over 64 bits.
orjson is fast but refuses some of these and quietly turns NaN into ``null``;
these helpers use it for every ordinary record and fall back only when needed.
"""

from __future__ import annotations

import gc
import json
import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson


def dumps_exact(value: Any) -> bytes:
    """Compact JSON of ``value`` with nothing altered (NaN stays NaN).

    orjson writes NaN and Infinity as ``null``; a record whose output has a
    ``null`` is read back and compared (fast, in C) before the slow walk that
    looks for them, so ordinary records with real nulls stay cheap.
    """
    try:
        out = orjson.dumps(value)
    except (orjson.JSONEncodeError, TypeError):
        return _dumps_lenient(value)
    if b"null" in out and orjson.loads(out) != value and _has_non_finite(value):
        return _dumps_lenient(value)
    return out


def loads_lenient(data: bytes | str) -> Any:
    """Parse JSON, accepting what ``dumps_exact`` may write (NaN, Infinity)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building a great many JSON objects.

    Parsed JSON holds no reference cycles, yet every few hundred new objects
    start a collection, and the full ones walk everything already loaded: on
    Python 3.11 that makes reading a million documents several times slower.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _dumps_lenient(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True, separators=(",", ":"), default=str).encode()


def _has_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_non_finite(item) for item in value.values())
    if isinstance(value, list):
        return any(_has_non_finite(item) for item in value)
    return False


def write_jsonl(records: Iterable[Any], path: str | Path) -> int:
    """Write one JSON document per line, exactly as given; returns the number written."""
    count = 0
    with open(path, "wb") as out:
        for record in records:
            out.write(dumps_exact(record))
            out.write(b"\n")
            count += 1
    return count


def read_jsonl(path: str | Path) -> list[Any]:
    """Read what ``write_jsonl`` wrote (blank lines are skipped)."""
    with open(path, "rb") as lines, gc_paused():
        return [loads_lenient(line) for line in lines if line.strip()]
