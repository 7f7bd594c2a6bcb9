"""The value rules of trait-mapping.md ("Values"), one function at a time."""

from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moesif_segment_sync.pipeline.values import (
    BadValue,
    compact,
    first_present,
    is_absent,
    to_timestamp,
)

# ---------------------------------------------------------------- timestamps


def test_timestamp_with_seven_fractional_digits_and_z_becomes_milliseconds():
    assert to_timestamp("2023-07-27T21:52:58.0990000Z") == "2023-07-27T21:52:58.099Z"


def test_timestamp_without_a_zone_is_read_as_utc():
    assert to_timestamp("2023-07-27T21:55:19.464") == "2023-07-27T21:55:19.464Z"


def test_timestamp_with_an_offset_is_converted_to_utc():
    assert to_timestamp("2026-11-25T02:44:03.464+02:00") == "2026-11-25T00:44:03.464Z"


def test_timestamp_with_a_negative_offset_can_move_to_the_next_day():
    assert to_timestamp("2026-11-24T23:30:00.000-02:00") == "2026-11-25T01:30:00.000Z"


def test_epoch_milliseconds_become_an_iso_timestamp():
    assert to_timestamp(1795564800123) == "2026-11-25T00:00:00.123Z"


def test_timestamp_without_fractional_digits_gets_zero_milliseconds():
    assert to_timestamp("2023-07-27T21:52:58Z") == "2023-07-27T21:52:58.000Z"


def test_sub_millisecond_digits_are_truncated_not_rounded():
    assert to_timestamp("2023-07-27T21:52:58.0999999Z") == "2023-07-27T21:52:58.099Z"


def test_sub_millisecond_digits_are_truncated_with_an_offset_too():
    assert to_timestamp("2026-11-25T02:44:03.4649999+02:00") == "2026-11-25T00:44:03.464Z"


def test_fractional_epoch_milliseconds_are_truncated_not_rounded():
    assert to_timestamp(1795564800123.9) == "2026-11-25T00:00:00.123Z"


@pytest.mark.parametrize(
    "value",
    ["last tuesday", "2023-02-30T00:00:00Z", "27/07/2023 21:52", "2023-07-27T25:00:00Z",
     True, ["2023-07-27T21:52:58Z"], {"at": "2023-07-27T21:52:58Z"}],
)
def test_unparseable_timestamp_is_a_bad_value(value):
    with pytest.raises(BadValue):
        to_timestamp(value)


# ---------------------------------------------------------------- absent values


@pytest.mark.parametrize("value", [None, "", "   ", "\t\n", {}])
def test_null_blank_and_empty_object_are_absent(value):
    assert is_absent(value)


@pytest.mark.parametrize("value", [0, 0.0, False, "x", " x ", {"plan": None}])
def test_zero_false_text_and_objects_with_keys_are_present(value):
    assert not is_absent(value)


def test_first_present_skips_a_blank_value():
    assert first_present("  ", "ada@example.com") == "ada@example.com"


def test_first_present_is_none_when_every_value_is_absent():
    assert first_present(None, "", {}) is None


def test_compact_leaves_out_absent_values_and_keeps_zero_and_false():
    assert compact({"a": None, "b": " ", "c": {}, "d": 0, "e": False, "f": "x"}) == {
        "d": 0, "e": False, "f": "x",
    }


# ---------------------------------------------------------------- fast paths agree with datetime

def _via_datetime(value):
    """to_timestamp as first written: every form parsed into a datetime and formatted."""
    import math
    import re
    from datetime import UTC, datetime, timedelta

    from moesif_segment_sync.codec import format_utc

    if isinstance(value, str):
        match = re.match(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})?\Z",
                         value.strip(), re.ASCII)
        whole, fraction, zone = match.groups()
        moment = datetime.fromisoformat(whole + ("+00:00" if zone in (None, "Z") else zone))
        return format_utc(moment.astimezone(UTC), int((fraction or "0")[:3].ljust(3, "0")))
    return format_utc(datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=math.floor(value)))


@given(moment=st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
       digits=st.integers(0, 9), zone=st.sampled_from(["", "Z", "+00:00", "+05:30", "-11:00"]))
def test_string_timestamps_match_the_datetime_reading(moment, digits, zone):
    text = moment.strftime("%Y-%m-%dT%H:%M:%S").rjust(19, "0")
    if digits:
        text += "." + f"{moment.microsecond:06d}{moment.microsecond % 7}"[:digits]
    text += zone
    assert to_timestamp(text) == _via_datetime(text)


@given(millis=st.integers(-62_135_596_800_000, 253_402_300_799_999)
       | st.floats(-6e13, 2.5e14, allow_nan=False))
def test_epoch_timestamps_match_the_datetime_reading(millis):
    assert to_timestamp(millis) == _via_datetime(millis)


def test_calendar_impossible_dates_are_bad_values():
    with pytest.raises(BadValue):
        to_timestamp("2026-02-30T00:00:00.000Z")


@given(st.dictionaries(st.text(max_size=3), st.none() | st.text(" \tx", max_size=3)
                       | st.dictionaries(st.text(max_size=1), st.integers(), max_size=1)
                       | st.integers() | st.booleans() | st.lists(st.integers(), max_size=1)))
def test_compact_drops_exactly_what_is_absent(mapping):
    assert compact(mapping) == {k: v for k, v in mapping.items() if not is_absent(v)}
