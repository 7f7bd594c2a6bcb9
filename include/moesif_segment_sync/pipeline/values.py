"""Value rules of trait-mapping.md: timestamps, absent values, trimming."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

from ..codec import format_utc

_EPOCH_NAIVE = datetime(1970, 1, 1)  # UTC
# Moesif's forms: 7 fractional digits with Z, no zone (UTC), an offset.
_ISO = re.compile(
    r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})?\Z", re.ASCII)


class BadValue(ValueError):
    """A value that a rule cannot use; the caller drops the trait and counts a warning."""


def to_timestamp(value: object) -> str:
    """Any of Moesif's timestamp forms as an ISO-8601 UTC string with milliseconds.

    Sub-millisecond digits are truncated, never rounded. Raises ``BadValue``.
    """
    if isinstance(value, str):
        match = _ISO.match(value.strip())
        if match is None:
            raise BadValue(f"not a timestamp: {value[:40]!r}")
        whole, fraction, zone = match.groups()
        millis = (fraction or "0")[:3].ljust(3, "0")
        try:
            moment = datetime.fromisoformat(whole)  # validates the calendar: no 2026-02-30
            if zone is None or zone == "Z":
                # Already UTC, and ``whole`` is exactly the digits format_utc would write.
                return f"{whole}.{millis}Z"
            moment = datetime.fromisoformat(whole + zone).astimezone(UTC)
        except (ValueError, OverflowError) as exc:
            raise BadValue(f"not a timestamp: {value[:40]!r} ({exc})") from None
        return format_utc(moment, int(millis))
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise BadValue(f"not a timestamp: {value!r}")
        try:
            moment = _EPOCH_NAIVE + timedelta(milliseconds=math.floor(value))
        except OverflowError:
            raise BadValue(f"epoch milliseconds out of range: {value!r}") from None
        # isoformat pads the year to four digits and truncates to whole milliseconds.
        return moment.isoformat(timespec="milliseconds") + "Z"
    raise BadValue(f"not a timestamp: a {type(value).__name__}")


def is_absent(value: object) -> bool:
    """Absent means null, a blank string or an empty object: such a key is left out."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, dict):
        return not value
    return False


def first_present(*values: object) -> object | None:
    """The first value that is not absent: ``email``, else ``metadata.email``."""
    for value in values:
        if not is_absent(value):
            return value
    return None


def trimmed(value: object) -> object | None:
    return value.strip() if isinstance(value, str) else value


def compact(mapping: dict) -> dict:
    """The mapping without its absent values; an object whose every field is absent is empty.
    (``is_absent`` inlined: this runs a few times for every user.)"""
    return {key: value for key, value in mapping.items()
            if value is not None
            and (value.strip() if isinstance(value, str) else value != _EMPTY)}


_EMPTY: dict = {}
